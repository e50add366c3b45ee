"""Peer discovery benchmark: how long N units started together take until every unit lists
all N adopted and online, over real mDNS multicast and the signed HTTP exchange. Adoption is
done before the clock starts: each unit's data folder is given its key pair and a trust set
adopting the other N - 1 (no site key), as an admin's clicks would have left them.

Each unit is a ``python -m host.peerproc`` process in its own network namespace (10.77.0.x
on a bridge in a further namespace, as in ``tests/host/test_peers_netns.py``), so N = 10 is
ten namespaces, not one namespace with several addresses. Needs root (``ip netns``) and a
source checkout (the namespace helper lives in ``tests/host/netns.py``).

Figures, per N:

* ``peers.full_view_s.nN`` — from the moment the last unit was started (its process wrote
  its first view: web server, directory and mDNS up) to every unit's pane A listing all N
  adopted and online: discovery and exchange alone (issue 14: <= 5 s at N = 10);
* ``peers.full_view_from_spawn_s.nN`` — from spawning the first process (includes Python
  starting N processes on the machine's cores).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PORT = 8080
TIMEOUT_S = 60.0


def _unit_id(index: int) -> str:
    return f"smartPDU{index:06X}"


def adopt_each_other(folders: dict[str, Path]) -> None:
    """Every unit's key pair, and a trust set in which it adopted all the others."""
    from host.peers.identity import Identity
    from host.peers.trust import TrustSet

    keys = {uid: Identity.load(folder) for uid, folder in folders.items()}
    for uid, folder in folders.items():
        trust = TrustSet(uid, keys[uid], folder)
        for other, key in keys.items():
            if other != uid:
                trust.adopt(other, key.public_hex)


def full_view(n: int) -> dict[str, float]:
    """Start ``n`` units together; seconds until each lists all ``n`` adopted and online."""
    from tests.host.netns import Lan, read_view

    wanted = {_unit_id(i) for i in range(1, n + 1)}
    with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp, Lan() as lan:
        folders = {_unit_id(i): Path(tmp) / f"d{i}" for i in range(1, n + 1)}
        adopt_each_other(folders)
        hosts = [lan.add_host(i) for i in range(1, n + 1)]
        views = {h.index: Path(tmp) / f"view{h.index}.json" for h in hosts}
        started = time.monotonic()
        for host in hosts:
            argv = [
                sys.executable, "-m", "host.peerproc", "--unit-id", _unit_id(host.index),
                "--data-dir", str(folders[_unit_id(host.index)]), "--port", str(PORT),
                "--view-file", str(views[host.index]),
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
                online = {
                    row["id"]
                    for row in rows
                    if row["online"] and (row.get("local") or row.get("trust") == "adopted")
                }
                complete &= online == wanted
            if complete:
                done = time.monotonic()
                return {"total": done - started, "from_ready": done - max(ready.values())}
            time.sleep(0.02)


def run() -> dict[str, float | int | str]:
    root = str(Path(__file__).resolve().parents[2])  # the checkout: tests/ is not installed
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.host.netns import netns_unavailable

    reason = netns_unavailable()
    if reason is not None:
        print(f"peers bench skipped: {reason}", file=sys.stderr)
        return {"peers.skipped": reason}
    out: dict[str, float | int | str] = {}
    for n in (3, 10):
        figures = full_view(n)
        out[f"peers.full_view_s.n{n}"] = round(figures["from_ready"], 2)
        out[f"peers.full_view_from_spawn_s.n{n}"] = round(figures["total"], 2)
    out["peers.layout"] = (
        "one network namespace per unit, bridged; real mDNS + HTTP; adopted beforehand"
    )
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
