"""Many units on one LAN (issue 7, R8/R9): separate aggregator processes, each in its own
network namespace on a bridge, find each other over real mDNS multicast and share pane A.

Each unit is ``python -m host.peerproc``: the real PeerDirectory and exchange routes with a
synthetic unit whose L1/L2/L3/N are fixed, so every unit's pane A can be checked for every
other unit's exact figures. Their views are read from the files they write and, once, over
HTTP from inside a namespace. Timings asserted are only the issue's: a unit started (or
plugged in) later is listed on every unit within 5 s, a unit killed is shown offline within
10 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.host.netns import ROOT, Host, Lan, netns_unavailable, read_view

pytestmark = pytest.mark.slow

KEY = "festival-site-key-2026-stage-left"
PORT = 8080
HOT_CONNECT_S = 5.0  # the figures
OFFLINE_S = 10.0
ROGUE_ID = "smartPDUBAD001"


def unit_id(index: int) -> str:
    return f"smartPDU0000A{index}"


def currents(index: int) -> dict[str, float]:
    """The synthetic unit ``index``'s fixed figures."""
    return {"l1": 10.0 + index, "l2": 20.0 + index, "l3": 30.0 + index, "n": index / 10}


@pytest.fixture
def lan() -> Iterator[Lan]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces cannot be created here, so no real multicast: {reason}")
    with Lan() as network:
        yield network


class Units:
    """The peer processes of the test and their views."""

    def __init__(self, lan: Lan, tmp: Path) -> None:
        self.lan = lan
        self.tmp = tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.hosts: dict[int, Host] = {}

    def start(self, index: int, *, plugged: bool = True, site_key: str = KEY) -> float:
        host = self.lan.add_host(index, plugged=plugged)
        self.hosts[index] = host
        argv = [
            sys.executable, "-m", "host.peerproc", "--unit-id", unit_id(index),
            "--site-key", site_key, "--port", str(PORT), "--view-file", str(self.view_file(index)),
            "--db", str(self.tmp / f"u{index}.db"), "--log-level", "INFO",
        ]  # fmt: skip
        for key, value in currents(index).items():
            argv += [f"--{key}", str(value)]
        started = time.monotonic()
        self.procs[index] = self.lan.spawn(host, argv, log=self.tmp / f"u{index}.log")
        return started

    def view_file(self, index: int) -> Path:
        return self.tmp / f"view{index}.json"

    def view(self, index: int) -> dict[str, Any] | None:
        return read_view(self.view_file(index))

    def rows(self, index: int) -> dict[str, dict[str, Any]]:
        view = self.view(index)
        return {} if view is None else {row["id"]: row for row in view["units"]}

    def online(self, index: int) -> set[str]:
        view = self.view(index)
        if view is None or time.time() - view["t"] > 2.0:  # a dead process's last file
            return set()
        return {uid for uid, row in self.rows(index).items() if row["online"]}

    def status(self, index: int) -> dict[str, Any]:
        view = self.view(index)
        assert view is not None
        return view["status"]

    def logs(self) -> str:
        return "\n".join(
            f"--- unit {i}\n{(self.tmp / f'u{i}.log').read_text()[-3000:]}" for i in self.procs
        )


def wait_until(condition: Callable[[], bool], timeout: float, what: str, units: Units) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}\n{units.logs()}")
        time.sleep(0.05)
    return time.monotonic() - start


def sees_exactly(units: Units, viewers: list[int], members: list[int]) -> Callable[[], bool]:
    wanted = {unit_id(i) for i in members}
    return lambda: all(units.online(v) == wanted for v in viewers)


def test_units_find_each_other_share_the_list_and_ignore_a_rogue(lan: Lan, tmp_path: Path) -> None:
    units = Units(lan, tmp_path)
    figures: dict[str, float] = {}

    # --- three units started together find each other over mDNS (no static peers).
    for index in (1, 2, 3):
        units.start(index)
    initial = wait_until(sees_exactly(units, [1, 2, 3], [1, 2, 3]), 30.0, "3 units", units)
    figures["three_started_s"] = initial
    for viewer in (1, 2, 3):
        rows = units.rows(viewer)
        for index in (1, 2, 3):
            row = rows[unit_id(index)]
            assert {k: row[k] for k in ("l1", "l2", "l3", "n")} == currents(index)
            assert row["warning"] is False and row["tripped"] is False
            if index != viewer:
                assert row["url"] == f"http://10.77.0.{index}:{PORT}/"
        assert rows[unit_id(viewer)]["number"] == 1  # each unit first in its own order
        assert sorted(r["number"] for r in rows.values()) == [1, 2, 3]

    # --- pane A over HTTP, from another namespace.
    fetch = (
        "import json, urllib.request; print(urllib.request.urlopen("
        f"'http://10.77.0.1:{PORT}/api/v1/units', timeout=5).read().decode())"
    )
    over_http = json.loads(lan.run(units.hosts[2], [sys.executable, "-c", fetch]))
    assert over_http[0]["id"] == unit_id(1) and over_http[0]["local"] is True
    assert {row["id"] for row in over_http} == {unit_id(1), unit_id(2), unit_id(3)}
    assert [row["number"] for row in over_http] == [1, 2, 3]  # pane A in detection order
    by_id = {row["id"]: row for row in over_http}
    assert by_id[unit_id(3)]["l3"] == currents(3)["l3"] and by_id[unit_id(2)]["online"] is True

    # --- a 4th unit started later is on every unit within 5 s of its start.
    started = units.start(4)
    wait_until(sees_exactly(units, [1, 2, 3, 4], [1, 2, 3, 4]), 20.0, "unit 4 everywhere", units)
    figures["started_later_s"] = time.monotonic() - started
    assert figures["started_later_s"] <= HOT_CONNECT_S, figures
    assert units.rows(1)[unit_id(4)]["l1"] == currents(4)["l1"]
    assert units.rows(1)[unit_id(4)]["number"] == 4  # detection order, after 2 and 3

    # --- a running unit whose cable is plugged in later (hot-connect proper); meanwhile a
    # host on the LAN lists the services and resolves the names over mDNS, as scanners do.
    mdns = subprocess.Popen(
        ["ip", "netns", "exec", units.hosts[3].netns, sys.executable, "-m", "tests.host.netns",
         "probe", "--wait", "1.5", "--host", unit_id(1), "--host", unit_id(2)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    units.start(5, plugged=False)
    wait_until(lambda: units.view(5) is not None, 20.0, "unit 5 running, unplugged", units)
    time.sleep(1.5)  # long enough for mDNS to have given up its first queries
    assert units.online(5) == {unit_id(5)} and unit_id(5) not in units.online(1)
    out, err = mdns.communicate(timeout=20)
    assert mdns.returncode == 0, err.decode()[-2000:]
    seen = json.loads(out)
    smartpdu = {
        v["txt"]["id"]: v for v in seen["services"].values() if v["type"].startswith("_smartpdu")
    }
    http = {v["server"]: v for v in seen["services"].values() if v["type"].startswith("_http")}
    assert {unit_id(1), unit_id(2), unit_id(3)} <= set(smartpdu)
    one = smartpdu[unit_id(1)]
    assert one["port"] == PORT and one["addresses"] == ["10.77.0.1"]
    assert one["txt"]["proto"] == "2" and one["txt"]["model"] == "36"
    assert one["txt"]["port"] == str(PORT) and one["txt"]["auth"] == "1" and one["txt"]["ver"]
    assert f"{unit_id(1)}.local." in http and http[f"{unit_id(1)}.local."]["txt"]["path"] == "/"
    assert seen["hosts"] == {unit_id(1): ["10.77.0.1"], unit_id(2): ["10.77.0.2"]}

    plugged = time.monotonic()
    lan.plug(units.hosts[5])
    wait_until(sees_exactly(units, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]), 20.0, "unit 5 plugged", units)
    figures["plugged_in_s"] = time.monotonic() - plugged
    assert figures["plugged_in_s"] <= HOT_CONNECT_S, figures

    # --- the rogue: no site key; it copies the site's mDNS TXT, announces itself, answers
    # the units' polls with forged envelopes, and posts forgeries to every unit.
    rogue_host = lan.add_host(99)
    rogue = subprocess.run(
        ["ip", "netns", "exec", rogue_host.netns, sys.executable, "-m", "tests.host.netns",
         "rogue", "--address", rogue_host.address, "--port", str(PORT), "--claim", ROGUE_ID,
         "--victim", unit_id(1), "--serve-s", "3"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=40, check=False,
    )  # fmt: skip
    assert rogue.returncode == 0, rogue.stderr[-3000:]
    report = json.loads(rogue.stdout)
    assert len(report["targets"]) == 5, report
    assert report["copied_site_tag"] == units.status(1)["site"]
    for target, statuses in report["forged"].items():
        for kind, status in statuses.items():
            # 4xx, or the connection cut while a 200 kB body was still being sent
            assert 400 <= status < 500 or (kind == "huge" and status == -1), (target, kind)
    assert report["polls"] > 0, "the units never tried the rogue's announced address"

    # --- SIGKILL one unit: offline on all the others within 10 s; nobody else affected.
    killed = time.monotonic()
    units.procs[2].send_signal(signal.SIGKILL)
    units.procs[2].wait(5)
    survivors = [1, 3, 4, 5]

    def two_offline() -> bool:
        return all(
            unit_id(2) in units.rows(v) and not units.rows(v)[unit_id(2)]["online"]
            for v in survivors
        )

    wait_until(two_offline, 15.0, "unit 2 offline everywhere", units)
    figures["killed_offline_s"] = time.monotonic() - killed
    assert figures["killed_offline_s"] <= OFFLINE_S, figures
    assert sees_exactly(units, survivors, survivors)()

    # --- nothing the rogue sent reached any unit's list or changed any figure.
    for viewer in survivors:
        rows = units.rows(viewer)
        assert ROGUE_ID not in rows and set(rows) <= {unit_id(i) for i in range(1, 6)}
        assert {k: rows[unit_id(1)][k] for k in ("l1", "l2", "l3", "n")} == currents(1)
        assert all(row["name"] != "ROGUE" for row in rows.values())
        stats = units.status(viewer)["stats"]
        # its posts and its answers are protocol 1 (a site key's HMAC): refused as such
        assert stats["rejected_version"] >= 4, (viewer, stats)
        assert stats["rejected_malformed"] >= 3, stats
        assert stats["internal_errors"] == 0
    print("peer figures:", json.dumps({k: round(v, 2) for k, v in figures.items()}))
    print("unit 1 stats:", json.dumps(units.status(1)["stats"]))
