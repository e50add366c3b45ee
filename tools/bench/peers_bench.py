"""Peer discovery benchmark: how long N units started together take until every unit lists
all N, over real mDNS multicast and the signed HTTP exchange.

Each unit is a ``python -m host.peerproc`` process in its own network namespace (10.77.0.x
on a bridge in a further namespace, as in ``tests/host/test_peers_netns.py``), so N = 10 is
ten namespaces, not one namespace with several addresses. Needs root (``ip netns``) and a
source checkout (the namespace helper lives in ``tests/host/netns.py``).

Figures, per N:

* ``peers.full_view_s.nN`` — from spawning the first process to every unit's pane A showing
  all N units online (includes Python starting N processes on the machine's cores);
* ``peers.full_view_from_ready_s.nN`` — from the moment the last of them was running (wrote
  its first view) to the full view: discovery and exchange alone.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEY = "bench-site-key-0123456789abcdef"
PORT = 8080
TIMEOUT_S = 60.0


def _unit_id(index: int) -> str:
    return f"smartPDU{index:06X}"


def full_view(n: int) -> dict[str, float]:
    """Start ``n`` units together; seconds until each lists all ``n`` online."""
    from tests.host.netns import Lan, read_view

    wanted = {_unit_id(i) for i in range(1, n + 1)}
    with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp, Lan() as lan:
        hosts = [lan.add_host(i) for i in range(1, n + 1)]
        views = {h.index: Path(tmp) / f"view{h.index}.json" for h in hosts}
        started = time.monotonic()
        for host in hosts:
            argv = [
                sys.executable, "-m", "host.peerproc", "--unit-id", _unit_id(host.index),
                "--site-key", KEY, "--port", str(PORT), "--view-file", str(views[host.index]),
                "--db", str(Path(tmp) / f"u{host.index}.db"), "--view-every", "0.05",
                "--l1", str(float(host.index)), "--l2", "1", "--l3", "2", "--n", "0.1",
            ]  # fmt: skip
            lan.spawn(host, argv, log=Path(tmp) / f"u{host.index}.log")
        ready: dict[int, float] = {}
        while True:
            now = time.monotonic()
            if now - started > TIMEOUT_S:
                logs = (Path(tmp) / "u1.log").read_text()[-2000:]
                raise RuntimeError(f"{n} units: no full view within {TIMEOUT_S} s\n{logs}")
            complete = True
            for index, path in views.items():
                view = read_view(path)
                if view is None:
                    complete = False
                    continue
                ready.setdefault(index, now)
                rows: list[dict[str, Any]] = view["units"]  # pyright: ignore[reportAssignmentType]
                online = {row["id"] for row in rows if row["online"]}
                complete &= online == wanted
            if complete:
                done = time.monotonic()
                return {"total": done - started, "from_ready": done - max(ready.values())}
            time.sleep(0.02)


def run() -> dict[str, float | int | str]:
    from tests.host.netns import netns_unavailable

    reason = netns_unavailable()
    if reason is not None:
        print(f"peers bench skipped: {reason}", file=sys.stderr)
        return {"peers.skipped": reason}
    out: dict[str, float | int | str] = {}
    for n in (3, 10):
        figures = full_view(n)
        out[f"peers.full_view_s.n{n}"] = round(figures["total"], 2)
        out[f"peers.full_view_from_ready_s.n{n}"] = round(figures["from_ready"], 2)
    out["peers.layout"] = "one network namespace per unit, bridged; real mDNS + HTTP"
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
