"""``smartpdu serve`` (``python -m host``) on the 6-board ``bench72`` virtual PDU (a smartPDU 72:
72 outputs, the meter, the mains node), for the benchmarks that measure the service process,
and that process's CPU time and memory from /proc.

The virtual PDU runs in its own processes (``tools.virtual.vpdu``), so the service's figures
are its own alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def proc_cpu_s(pid: int) -> float:
    """The CPU seconds (utime + stime) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def proc_rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` now, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class BenchService:
    """The running ``smartpdu serve`` process and the port of its web server."""

    proc: subprocess.Popen[Any]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def bench72_service(warmup_s: float = 15.0) -> Iterator[BenchService]:
    """The virtual smartPDU 72 and ``smartpdu serve`` on it (web on 127.0.0.1), yielded after
    ``warmup_s`` seconds (discovery, first cycles, meter); both stopped afterwards. A service
    that exited while the caller measured it is a RuntimeError."""
    with tempfile.TemporaryDirectory(prefix="smartpdu-bench-") as tmp:
        work = Path(tmp)
        sim = subprocess.Popen(
            [sys.executable, "-m", "tools.virtual.vpdu", "--scenario", "bench72", "--workdir",
             str(work / "vpdu"), "-q"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        serve = None
        try:
            assert sim.stdout is not None
            ports = json.loads(sim.stdout.readline())
            port = free_port()
            config = work / "config.toml"
            config.write_text(
                f'[unit]\nmodel = 72\n[bus]\nport = "{ports["master"]}"\n'
                f'[meter]\nport = "{ports["meter"]}"\nbaud = {ports.get("meter_baud", 9600)}\n'
                f'[storage]\nvar_dir = "{work}"\ndatabase = "{work / "db.sqlite"}"\n'
                f'[web]\nhost = "127.0.0.1"\nport = {port}\n'
            )
            serve = subprocess.Popen(
                [sys.executable, "-m", "host", "--config", str(config)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            time.sleep(warmup_s)
            yield BenchService(serve, port)
            if serve.poll() is not None:
                raise RuntimeError(f"smartpdu serve exited with {serve.returncode}")
        finally:
            for proc in (serve, sim):
                if proc is not None:
                    _stop(proc)
