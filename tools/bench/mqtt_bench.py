"""MQTT export benchmark: messages per second the service publishes and its CPU with the
export on, against a real mosquitto. Prints figures; asserts nothing.

Each repetition: the virtual smartPDU 72 of the aggregator benchmark (``bench72``: six
loaded groups, the meter) in its own processes, a mosquitto on a free port, ``python -m host``
with ``[export.mqtt]`` on, and an independent subscriber on ``<prefix>/#`` and the
discovery topics. After a warm-up the window counts the messages received and the CPU of the
service process alone (/proc utime + stime, as ``aggregator_bench`` does).

- ``export.mqtt_msgs_per_s`` (median, ``_worst`` = the highest): state messages per second
  at that load (mains once a second, channel currents beyond the 0.1 A deadband, events);
- ``host.cpu_pct_one_core_mqtt`` (median, ``_worst``): the service's CPU with the exports on
  as a site runs them (MQTT, and ``/metrics`` scraped every 5 s); the same without either is
  ``host.cpu_pct_one_core_no_mqtt`` (run interleaved);
- ``host.loadavg_1m``: the machine's load average at the end (a shared machine inflates CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from tools.bench.service_proc import proc_cpu_s as _proc_cpu_s

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _count(port: int, counts: dict[str, int]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-sub") as client:
        await client.subscribe("smartpdu/#")
        await client.subscribe("homeassistant/#")
        async for message in client.messages:
            key = "discovery" if str(message.topic).startswith("homeassistant/") else "state"
            counts[key] = counts.get(key, 0) + 1


def _stop(proc: subprocess.Popen[Any] | asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)


async def _scrape_every(url: str, interval_s: float) -> None:
    """GET /metrics like a Prometheus server with a 5 s scrape interval."""
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    await response.read()
            await asyncio.sleep(interval_s)


async def _one(work: Path, mqtt: bool, warmup_s: float, window_s: float) -> dict[str, float]:
    sim = subprocess.Popen(
        [sys.executable, "-m", "tools.virtual.vpdu", "--scenario", "bench72", "--workdir",
         str(work / "vpdu"), "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    broker = serve = None
    counter: asyncio.Task[None] | None = None
    scraper: asyncio.Task[None] | None = None
    try:
        assert sim.stdout is not None
        ports = json.loads(sim.stdout.readline())
        port = _free_port()
        web_port = _free_port()
        conf = work / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = await asyncio.create_subprocess_exec(
            MOSQUITTO, "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        await _wait_listening(port)
        config = work / "config.toml"
        config.write_text(
            f'[unit]\nmodel = 72\n[bus]\nport = "{ports["master"]}"\n'
            f'[meter]\nport = "{ports["meter"]}"\nbaud = {ports.get("meter_baud", 9600)}\n'
            f'[storage]\nvar_dir = "{work}"\ndatabase = "{work / "db.sqlite"}"\n'
            f'[web]\nhost = "127.0.0.1"\nport = {web_port}\n[peers]\nenabled = false\n'
            f'[export.mqtt]\nenabled = {"true" if mqtt else "false"}\nhost = "127.0.0.1"\n'
            f"port = {port}\n"
        )
        counts: dict[str, int] = {}
        counter = asyncio.create_task(_count(port, counts))
        if mqtt:  # the exports as a site runs them: MQTT and a Prometheus scrape every 5 s
            scraper = asyncio.create_task(
                _scrape_every(f"http://127.0.0.1:{web_port}/metrics", 5.0)
            )
        serve = subprocess.Popen(
            [sys.executable, "-m", "host", "--config", str(config)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        await asyncio.sleep(warmup_s)
        state0, cpu0, t0 = counts.get("state", 0), _proc_cpu_s(serve.pid), time.monotonic()
        await asyncio.sleep(window_s)
        elapsed = time.monotonic() - t0
        cpu = (_proc_cpu_s(serve.pid) - cpu0) / elapsed * 100
        if serve.poll() is not None:
            raise RuntimeError(f"the service exited with {serve.returncode}")
        return {
            "msgs_per_s": (counts.get("state", 0) - state0) / elapsed,
            "discovery": counts.get("discovery", 0),
            "cpu_pct": cpu,
        }
    finally:
        if scraper is not None:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
        if counter is not None:
            counter.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await counter
        for proc in (serve, sim):
            _stop(proc)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)
        _stop(broker)
        if broker is not None:
            await broker.wait()


async def _bench(repeats: int, warmup_s: float, window_s: float) -> dict[str, Any]:
    on: list[dict[str, float]] = []
    off: list[dict[str, float]] = []
    for _ in range(repeats):
        for mqtt, into in ((True, on), (False, off)):
            with tempfile.TemporaryDirectory(prefix="smartpdu-mqtt-bench-") as tmp:
                into.append(await _one(Path(tmp), mqtt, warmup_s, window_s))
    rates = [r["msgs_per_s"] for r in on]
    cpu_on = [r["cpu_pct"] for r in on]
    cpu_off = [r["cpu_pct"] for r in off]
    return {
        "export.mqtt_msgs_per_s": round(statistics.median(rates), 1),
        "export.mqtt_msgs_per_s_worst": round(max(rates), 1),
        "export.mqtt_discovery_messages": int(statistics.median(r["discovery"] for r in on)),
        "host.cpu_pct_one_core_mqtt": round(statistics.median(cpu_on), 1),
        "host.cpu_pct_one_core_mqtt_worst": round(max(cpu_on), 1),
        "host.cpu_pct_one_core_no_mqtt": round(statistics.median(cpu_off), 1),
        "host.cpu_pct_one_core_no_mqtt_worst": round(max(cpu_off), 1),
        "host.loadavg_1m": round(os.getloadavg()[0], 2),
        "export.mqtt_repeats": repeats,
        "export.mqtt_window_s": window_s,
    }


def run(repeats: int = 3, warmup_s: float = 15.0, window_s: float = 20.0) -> dict[str, Any]:
    return asyncio.run(_bench(repeats, warmup_s, window_s))


if __name__ == "__main__":
    print(json.dumps(run(), indent=1, sort_keys=True))
