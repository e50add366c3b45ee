"""Many units on one LAN (issue 7), with whole units: each unit is ``smartpdu run --config``
(a virtual smartPDU 36 — three group boards and the mains status node running the real
firmware, the simulated meter — under the real aggregator service with its web interface),
in its own network namespace, all joined by a bridge; they find each other over real mDNS
multicast, nothing configured but a shared site key.

What the test looks at is what a browser on the LAN gets: an observer in a namespace of its
own polls every unit's ``GET /api/v1/units`` (pane A's list) every 0.2 s and its
``GET /api/v1/peers`` every second (``tests.host.netns watch``). Times are taken from the
observer's answers, so they include its 0.2 s polling step:

* "appears within 5 s": from the first answer of the 4th unit's own API (its service is up:
  bus, storage, web and the peer directory started together) to the first round of answers
  in which every unit lists every other one reachable (and the 4th lists the three);
* "offline within 10 s": from the SIGKILL of a unit's process to the first round in which
  every other unit shows it offline.

Rogues: a host signing with a wrong key that copies the site's mDNS TXT, announces itself,
answers the units' polls with forged envelopes and posts forgeries to every unit
(``tests.host.netns rogue``, on the LAN while the 4th unit arrives), and a unit with no site
key at all (``host.peerproc``, an open exchange) running throughout. Neither may ever appear
in any unit's list, in any answer the observer got.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.host.netns import Host, Lan, netns_unavailable, read_view

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KEY = "festival-site-key-2026-stage-left"
PORT = 8080
HOT_CONNECT_S = 5.0  # the figures
OFFLINE_S = 10.0
START_TIMEOUT_S = 150.0  # four MicroPython boards per unit boot on a shared 2-core machine
ROGUE_ID = "smartPDUBAD001"
OPEN_ID = "smartPDU0000FF"  # the unit without a site key
OBSERVER = 200
OPEN_UNIT = 98
ROGUE = 99


def unit_id(index: int) -> str:
    return f"smartPDU0007A{index}"


def unit_name(index: int) -> str:
    return f"Stage rack {index}"


def url(index: int) -> str:
    return f"http://10.77.0.{index}:{PORT}/"


def loads(index: int) -> dict[str, float]:
    """The resistive loads of unit ``index``'s show: A1 on L1, A2 on L2, A3 on L3 (A)."""
    return {"l1": 1.0 + index, "l2": 2.5 + index, "l3": 6.0 - index}


def expected(index: int) -> dict[str, float]:
    """Unit ``index``'s L1/L2/L3/N as its meter reads them (N: the phasor sum of three
    resistive currents 120 degrees apart)."""
    a, b, c = loads(index).values()
    n = math.sqrt(a * a + b * b + c * c - a * b - b * c - c * a)
    return {**loads(index), "n": n}


SCENARIO = """\
[scenario]
description = "issue 7: a smartPDU 36 with three steady resistive loads"
model = 36
mains_hz = 50
loop = false
seed = {index}

[[load]]
channels = "A1"
kind = "resistive"
amps = {l1}

[[load]]
channels = "A2"
kind = "resistive"
amps = {l2}

[[load]]
channels = "A3"
kind = "resistive"
amps = {l3}
"""

CONFIG = """\
[unit]
id = "{unit_id}"
name = "{name}"

[web]
port = {port}

[storage]
var_dir = "{var_dir}"

[peers]
site_key = "{key}"
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short: the virtual PDU's UNIX sockets live under it (sun_path is 108 bytes).
    folder = Path(tempfile.mkdtemp(prefix="spdu7-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def lan(workdir: Path) -> Iterator[Lan]:
    # Takes workdir so that every process has stopped before its folder is removed.
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces cannot be created here, so no real multicast: {reason}")
    with Lan() as network:
        yield network
    assert network.leftovers == [], f"processes left in the namespaces: {network.leftovers}"


class Site:
    """The units, the observer and the rogues of the test."""

    def __init__(self, lan: Lan, tmp: Path) -> None:
        self.lan = lan
        self.tmp = tmp
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.hosts: dict[int, Host] = {}
        self.view_file = tmp / "observer.json"

    def log(self, index: int) -> Path:
        return self.tmp / f"unit{index}.log"

    def start_observer(self, indexes: list[int]) -> None:
        host = self.lan.add_host(OBSERVER)
        argv = [sys.executable, "-m", "tests.host.netns", "watch", "--out", str(self.view_file)]
        for index in indexes:
            argv += ["--url", url(index)]
        self.procs[OBSERVER] = self.lan.spawn(host, argv, log=self.log(OBSERVER))

    def start_unit(self, index: int) -> None:
        """``smartpdu run --config`` in namespace ``index``: its own config, show, data."""
        host = self.lan.add_host(index)
        self.hosts[index] = host
        folder = self.tmp / f"unit{index}"
        folder.mkdir()
        scenario = folder / "show.toml"
        scenario.write_text(SCENARIO.format(index=index, **loads(index)))
        config = folder / "smartpdu.toml"
        config.write_text(
            CONFIG.format(
                unit_id=unit_id(index), name=unit_name(index), port=PORT,
                var_dir=folder / "var", key=KEY,
            )
        )  # fmt: skip
        argv = [sys.executable, "-m", "tools.cli", "run", "--config", str(config),
                "--scenario", str(scenario)]  # fmt: skip
        self.procs[index] = self.lan.spawn(host, argv, log=self.log(index))

    def start_open_unit(self) -> None:
        host = self.lan.add_host(OPEN_UNIT)
        argv = [sys.executable, "-m", "host.peerproc", "--unit-id", OPEN_ID, "--port", str(PORT),
                "--l1", "66", "--l2", "66", "--l3", "66", "--n", "6", "--name", "OPEN",
                "--log-level", "INFO"]  # fmt: skip
        self.procs[OPEN_UNIT] = self.lan.spawn(host, argv, log=self.log(OPEN_UNIT))

    # -- what the observer saw -------------------------------------------------------------

    def seen(self) -> dict[str, Any]:
        data = read_view(self.view_file)
        return {} if data is None else data["units"]  # pyright: ignore[reportReturnType]

    def view(self, index: int) -> dict[str, Any]:
        return self.seen().get(url(index), {})

    def rows(self, index: int) -> dict[str, dict[str, Any]]:
        return {row["id"]: row for row in self.view(index).get("rows") or []}

    def logs(self) -> str:
        parts = []
        for index in self.procs:
            text = self.log(index).read_text(errors="replace") if self.log(index).exists() else ""
            parts.append(f"--- {index}\n{text[-2500:]}")
        views = {u: {k: v.get(k) for k in ("up_at", "t", "error", "polls")}
                 for u, v in self.seen().items()}  # fmt: skip
        return "\n".join(parts) + f"\n--- observer\n{json.dumps(views)}"


def wait_for(condition: Callable[[], float | None], timeout: float, what: str, site: Site) -> float:
    """Wait until ``condition()`` returns the observer time at which it became true."""
    deadline = time.monotonic() + timeout
    while True:
        at = condition()
        if at is not None:
            return at
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}\n{site.logs()}")
        time.sleep(0.05)


def all_see(site: Site, members: list[int]) -> Callable[[], float | None]:
    """Every unit of ``members`` lists every other one reachable (and itself first): the
    time of the newest of those answers, else None."""

    def check() -> float | None:
        times = []
        for viewer in members:
            view = site.view(viewer)
            rows = view.get("rows") or []
            if not rows or rows[0]["id"] != unit_id(viewer) or rows[0]["local"] is not True:
                return None
            by_id = {row["id"]: row for row in rows[1:]}
            for other in members:
                if other != viewer and not by_id.get(unit_id(other), {}).get("reachable"):
                    return None
            times.append(view["t"])
        return max(times)

    return check


def shown_offline(
    site: Site, viewers: list[int], gone: int, after: float
) -> Callable[[], float | None]:
    """Every unit of ``viewers`` shows ``gone`` offline, without figures, in an answer
    later than ``after``: the time of the newest of those answers, else None."""

    def check() -> float | None:
        times = []
        for viewer in viewers:
            view = site.view(viewer)
            row = site.rows(viewer).get(unit_id(gone))
            if view.get("t") is None or view["t"] < after or row is None:
                return None
            if row["reachable"] or row["online"] or row["l1"] is not None:
                return None
            times.append(view["t"])
        return max(times)

    return check


def test_whole_units_find_each_other_over_mdns(lan: Lan, workdir: Path) -> None:
    site = Site(lan, workdir)
    figures: dict[str, float] = {}
    test_started = time.monotonic()
    site.start_observer([1, 2, 3, 4, OPEN_UNIT])
    site.start_open_unit()

    # --- three whole units started together find each other (no static peers).
    for index in (1, 2, 3):
        site.start_unit(index)
    at = wait_for(all_see(site, [1, 2, 3]), START_TIMEOUT_S, "units 1-3 see each other", site)
    first_up = min(site.view(i)["up_at"] for i in (1, 2, 3))
    last_up = max(site.view(i)["up_at"] for i in (1, 2, 3))
    figures["three_started_to_api_s"] = last_up - test_started
    figures["three_api_to_all_seen_s"] = at - last_up
    assert first_up <= last_up <= at

    # --- each unit's pane A: the others with their own names and their own virtual PDU's
    # L1/L2/L3/N, and the link to each one's own web interface. The meter readings settle
    # within a poll or two; wait until every row is within 0.1 A of the show's loads.
    def figures_right() -> float | None:
        for viewer in (1, 2, 3):
            rows = site.rows(viewer)
            for index in (1, 2, 3):
                row = rows.get(unit_id(index))
                if row is None or row["source"] != "meter":
                    return None
                if any(row[k] is None or abs(row[k] - v) > 0.1 for k, v in expected(index).items()):
                    return None
        return time.monotonic()

    wait_for(figures_right, 30.0, "every unit shows every unit's meter figures", site)
    for viewer in (1, 2, 3):
        rows = site.rows(viewer)
        assert next(iter(rows)) == unit_id(viewer)  # this unit first, then detection order
        assert sorted(r["number"] for r in rows.values()) == [1, 2, 3]
        for index in (1, 2, 3):
            row = rows[unit_id(index)]
            assert row["name"] == row["custom_name"] == unit_name(index)
            assert row["model"] == 36 and row["warning"] is False and row["tripped"] is False
            assert row["online"] is True and row["local"] is (index == viewer)
            if index != viewer:
                # The link opens the unit's own web interface, where it is the local unit.
                assert row["url"] == url(index) and row["via"] == "direct"
                assert row["reachable"] is True and row["last_seen_s"] < 3.0
    for index in (1, 2, 3):
        view = site.view(index)
        assert view["home"] == {"status": 200, "type": "text/html", "html": True}, view["home"]
        own = view["rows"][0]
        assert own["id"] == unit_id(index) and own["local"] is True
        for viewer in (1, 2, 3):  # the others show what this unit itself shows
            if viewer != index:
                theirs = site.rows(viewer)[unit_id(index)]
                for key in ("l1", "l2", "l3", "n"):
                    assert abs(theirs[key] - own[key]) <= 0.15, (viewer, index, key)
        peers = view["peers"]
        assert peers["unit_id"] == unit_id(index) and peers["authenticated"] is True
        assert peers["addresses"] == [f"10.77.0.{index}"] and peers["mdns"]["error"] is None

    # --- the rogue signing with a wrong key: copies the site's mDNS TXT, announces itself,
    # answers the units' polls with forgeries and posts forgeries to every unit it finds;
    # it stays on the LAN while the 4th unit arrives.
    rogue_host = lan.add_host(ROGUE)
    rogue_log = workdir / "rogue.out"
    rogue = lan.spawn(
        rogue_host,
        [sys.executable, "-m", "tests.host.netns", "rogue", "--address", rogue_host.address,
         "--port", str(PORT), "--claim", ROGUE_ID, "--victim", unit_id(1), "--serve-s", "12"],
        log=rogue_log,
    )  # fmt: skip
    time.sleep(1.0)  # it browses the LAN first

    # --- a 4th unit started later: on every unit within 5 s of its own API answering.
    started = time.monotonic()
    site.start_unit(4)
    up = wait_for(lambda: site.view(4).get("up_at"), START_TIMEOUT_S, "unit 4's API", site)
    at = wait_for(all_see(site, [1, 2, 3, 4]), 30.0, "unit 4 on every unit", site)
    figures["fourth_start_to_api_s"] = up - started
    figures["fourth_api_to_all_seen_s"] = at - up
    assert figures["fourth_api_to_all_seen_s"] <= HOT_CONNECT_S, (figures, site.logs())
    assert site.rows(1)[unit_id(4)]["number"] == 4  # detected after 2 and 3
    assert site.rows(4)[unit_id(4)]["number"] == 1  # each unit first in its own order

    assert rogue.wait(60) == 0, rogue_log.read_text()[-3000:]
    report = json.loads(rogue_log.read_text().strip().splitlines()[-1])
    assert {url(i) for i in (1, 2, 3)} <= set(report["targets"]), report
    assert report["copied_site_tag"] == site.view(1)["peers"]["site"]
    for target, statuses in report["forged"].items():
        for kind, status in statuses.items():
            # 4xx, or the connection cut while a 200 kB body was still being sent
            assert 400 <= status < 500 or (kind == "huge" and status == -1), (target, kind)
    assert report["polls"] > 0, "the units never tried the rogue's announced address"

    # --- kill -9 one unit: offline on every other unit within 10 s.
    victim = site.procs[2]
    in_namespace = lan.pids(site.hosts[2])
    assert victim.pid in in_namespace and len(in_namespace) >= 6, in_namespace  # + boards
    killed = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    at = wait_for(shown_offline(site, [1, 3, 4], 2, killed), 30.0, "unit 2 offline", site)
    figures["killed_to_offline_s"] = at - killed
    assert figures["killed_to_offline_s"] <= OFFLINE_S, (figures, site.logs())
    assert all_see(site, [1, 3, 4])() is not None  # nobody else affected
    # Its boards and their reaper went with it: nothing left in its namespace.
    wait_for(lambda: None if lan.pids(site.hosts[2]) else time.monotonic(), 10.0,
             f"unit 2's processes gone (left: {lan.pids(site.hosts[2])})", site)  # fmt: skip

    # --- neither rogue ever appeared on any unit, and the figures are the units' own.
    site_ids = {unit_id(i) for i in (1, 2, 3, 4)}
    for index in (1, 3, 4):
        view = site.view(index)
        assert set(view["ever"]) <= site_ids, (index, view["ever"])
        assert {k: view["rows"][0][k] for k in ("l1", "l2", "l3")} == pytest.approx(
            loads(index), abs=0.1
        )
        stats = view["peers"]["stats"]
        assert stats["internal_errors"] == 0, (index, stats)
        if index == 4:  # up after the rogue posted: refused its answers to 4's polls
            assert stats["rejected_signature"] >= 1, (index, stats)
        else:  # and its posts
            assert stats["rejected_signature"] >= 3 and stats["rejected_unsigned"] >= 1, stats
    for viewer in (1, 3):
        assert site.rows(viewer)[unit_id(1)]["name"] == unit_name(1)
        assert site.rows(viewer)[unit_id(4)]["l1"] == pytest.approx(expected(4)["l1"], abs=0.1)
    # The open unit never got in, and never let the site's units into its own list either.
    open_view = site.view(OPEN_UNIT)
    assert open_view["up_at"] is not None and set(open_view["ever"]) == {OPEN_ID}, open_view

    # --- a clean stop: every unit exits 0 on SIGTERM and leaves no process behind.
    for index in (1, 3, 4):
        site.procs[index].send_signal(signal.SIGTERM)
    for index in (1, 3, 4):
        try:
            code: int | None = site.procs[index].wait(30)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"unit {index}: exit status {code} after SIGTERM\n{site.logs()}"
    for index in (1, 3, 4):
        assert lan.pids(site.hosts[index]) == [], (index, lan.pids(site.hosts[index]))
    figures["test_s"] = time.monotonic() - test_started
    print("units figures:", json.dumps({k: round(v, 2) for k, v in figures.items()}))
