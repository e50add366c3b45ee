"""Storage: schema migrations, settings that survive kill -9, the event log with black
boxes, 1 s / 1 min history with retention and a size bound, and the recorder that wires
the unit state to it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from host.config import HistoryConfig, default_config
from host.state import (
    ChannelSample,
    ChannelState,
    Event,
    EventKind,
    MeterSample,
    Severity,
    UnitState,
)
from host.storage.blackbox import BlackBox
from host.storage.recorder import Recorder, history_values
from host.storage.schema import SCHEMA_VERSION, StorageError, migrate
from host.storage.store import Storage
from host.supervision import SupervisionSettings
from protocol import consts as C
from protocol.messages import Info, Report, Status

ROOT = Path(__file__).resolve().parents[2]


def event(
    kind: EventKind = EventKind.SETTINGS_CHANGED, t: float | None = None, **data: object
) -> Event:
    return Event(
        time.time() if t is None else t,
        kind,
        Severity.INFO,
        "smartPDU00AA01",
        "A",
        "A1",
        f"{kind.value} happened",
        data,
    )


@pytest.fixture
async def storage(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = await Storage.open(tmp_path / "var" / "pdu.db")
    yield store
    await store.close()


# ----------------------------------------------------------------------------- schema


async def test_open_creates_the_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "pdu.db"
    store = await Storage.open(path)
    await store.close()
    await store.close()  # twice is fine
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"settings", "channel_labels", "channel_supervision", "units", "events"} <= tables
    assert {"black_boxes", "series", "samples", "minutes", "schema_version"} <= tables
    con.close()
    # Reopening migrates nothing and keeps one row per version.
    store = await Storage.open(path)
    await store.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    con.close()
    with pytest.raises(StorageError, match="closed"):
        await store.load_settings()


async def test_migrates_an_old_database_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path, isolation_level=None)
    assert migrate(con, target=1) == 1
    con.execute("INSERT INTO channel_labels VALUES ('B4', 'Haze', 0)")
    con.close()
    store = await Storage.open(path)
    settings = await store.load_settings()
    await store.close()
    assert settings.labels == {"B4": "Haze"}
    con = sqlite3.connect(path)
    assert con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 2
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"events_by_time", "events_by_kind"} <= indexes
    con.close()


async def test_refuses_a_database_from_newer_software(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    con = sqlite3.connect(path, isolation_level=None)
    migrate(con)
    con.execute("INSERT INTO schema_version VALUES (99)")
    con.close()
    with pytest.raises(StorageError, match=r"schema version 99 is newer than this software"):
        await Storage.open(path)


async def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match=r"junk\.db"):
        await Storage.open(path)


# ----------------------------------------------------------------------------- settings


async def test_settings_round_trip(storage: Storage) -> None:
    assert (await storage.load_settings()).unit_name is None
    await storage.save_unit_name("Stage left")
    await storage.save_channel_label("A1", "Movers")
    await storage.save_channel_label("A1", "Movers SR")
    await storage.save_channel_label("C12", "Ünïcødé ✓")
    supervision = SupervisionSettings(True, 1.5, 12.0, dwell_s=5.0, hysteresis_a=0.25)
    await storage.save_supervision("B7", supervision)
    settings = await storage.load_settings()
    assert settings.unit_name == "Stage left"
    assert settings.labels == {"A1": "Movers SR", "C12": "Ünïcødé ✓"}
    assert settings.supervision == {"B7": supervision}
    with pytest.raises(ValueError):
        await storage.save_channel_label("A2", "x" * 40)
    with pytest.raises(ValueError):
        await storage.save_supervision("A2", SupervisionSettings(True, 5.0, 1.0))
    assert "A2" not in (await storage.load_settings()).labels


async def test_unit_numbers_follow_detection_order_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "pdu.db"
    store = await Storage.open(path)
    assert await store.unit_number("smartPDU00AA01") == 1
    assert await store.unit_number("smartPDU00AA07") == 2
    assert await store.unit_number("smartPDU00AA01") == 1
    await store.close()
    store = await Storage.open(path)
    assert await store.unit_number("smartPDU00AA03") == 3
    assert await store.unit_number("smartPDU00AA07") == 2
    assert await store.unit_numbers() == {
        "smartPDU00AA01": 1,
        "smartPDU00AA07": 2,
        "smartPDU00AA03": 3,
    }
    await store.close()


# ----------------------------------------------------------------------------- events


async def test_event_log_pages_and_filters(storage: Storage) -> None:
    ids = [await storage.append_event(event(n=i)) for i in range(5)]
    ids.append(await storage.append_event(event(EventKind.METER_STALE)))
    newest = await storage.events(limit=3)
    assert [e.id for e in newest] == ids[::-1][:3]
    page = await storage.events(limit=10, before_id=newest[-1].id)
    assert [e.id for e in page] == ids[::-1][3:]
    stale = await storage.events(kinds=["meter.stale"])
    assert [e.kind for e in stale] == ["meter.stale"]
    first = page[-1]
    assert first.data == {"n": 0} and first.group == "A" and first.channel == "A1"
    assert first.unit == "smartPDU00AA01" and not first.has_black_box
    assert json.loads(json.dumps(first.to_dict()))["message"] == "settings.changed happened"
    assert await storage.events(since=time.time() + 10) == []


async def test_black_box_is_saved_with_a_trip(storage: Storage) -> None:
    box = BlackBox(window_s=30.0)
    t0 = 1_700_000_000.0
    for i in range(400):  # 40 s of reports at 10 Hz, meter every second
        t = t0 + i * 0.1
        box.record(ChannelSample(t, "A", (1.0 + i,) + (0.0,) * 11, (ChannelState.OK,) * 12))
        box.record(ChannelSample(t + 0.05, "A", (0.0,) * 12, (ChannelState.OFF,) * 12))
        if i % 10 == 0:
            box.record(MeterSample(t, {"l1_current": float(i)}))
    dump = box.dump()
    frames = dump["groups"]["A"]
    assert frames[-1][0] - frames[0][0] <= 30.0 and 300 <= len(frames) <= 301  # 10 Hz, 30 s
    assert {f[2][0] for f in frames} == {"ok"}  # the 20 Hz in-between frames were thinned out
    assert len(dump["meter"]) == 30
    trip = await storage.append_event(event(EventKind.BREAKER_TRIPPED), dump)
    other = await storage.append_event(event())
    [stored] = [e for e in await storage.events() if e.id == trip]
    assert stored.has_black_box
    assert await storage.black_box(trip) == json.loads(json.dumps(dump))
    assert await storage.black_box(other) is None


# ----------------------------------------------------------------------------- history


def minute_start(minutes_ago: int) -> int:
    return (int(time.time()) // 60 - minutes_ago) * 60


async def test_history_seconds_and_minutes(tmp_path: Path) -> None:
    store = await Storage.open(tmp_path / "pdu.db")
    t0 = minute_start(10)
    for s in range(180):  # three whole minutes of 1 s samples
        store.add_history(t0 + s, {"A1": float(s % 60), "meter.l1_current": 100.0 + s})
    store.add_history(t0, {"bad": float("inf")})  # dropped, never written
    await store.flush()
    seconds = await store.history("A1", t0, t0 + 9, "seconds")
    assert [p.t for p in seconds] == list(range(t0, t0 + 10))
    assert seconds[5].avg == 5.0 and seconds[5].min == seconds[5].max == 5.0
    await store.maintain(now=t0 + 185)
    minutes = await store.history("A1", t0, t0 + 179, "minutes")
    assert [(p.t, p.min, p.avg, p.max) for p in minutes] == [
        (t0, 0.0, 29.5, 59.0),
        (t0 + 60, 0.0, 29.5, 59.0),
        (t0 + 120, 0.0, 29.5, 59.0),
    ]
    assert (await store.history("A1", t0, t0 + 30))[0].t == t0  # auto: recent = seconds
    assert await store.history("nope", t0, t0 + 30) == []
    assert "meter.l1_current" in await store.series_names()
    await store.close()


async def test_minutes_are_recovered_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "pdu.db"
    store = await Storage.open(path)
    t0 = minute_start(5)
    for s in range(120):
        store.add_history(t0 + s, {"A1": 2.0})
    await store.flush()
    await store.close()  # no maintain: as if killed before the minute job ran
    store = await Storage.open(path)  # aggregates at open
    minutes = await store.history("A1", t0, t0 + 119, "minutes")
    assert [p.avg for p in minutes] == [2.0, 2.0]
    await store.close()


async def test_retention_prunes_samples_minutes_and_events(tmp_path: Path) -> None:
    history = HistoryConfig(keep_samples_s=3600, keep_minutes_days=1, keep_events_days=2)
    store = await Storage.open(tmp_path / "pdu.db", history)
    now = float(minute_start(0))
    old = int(now) - 2 * 3600
    for s in range(120):
        store.add_history(old + s, {"A1": 1.0})
        store.add_history(int(now) - 600 + s, {"A1": 3.0})
    await store.flush()
    con = sqlite3.connect(store.path)
    con.execute("INSERT INTO minutes VALUES (1, ?, 1, 1, 1, 60)", (int(now) - 3 * 86400,))
    con.commit()
    con.close()
    old_trip = await store.append_event(event(EventKind.BREAKER_TRIPPED, t=now - 3 * 86400), {})
    recent = await store.append_event(event(t=now - 3600))
    await store.maintain(now=now)
    assert await store.history("A1", old, old + 200, "seconds") == []
    assert len(await store.history("A1", now - 600, now, "seconds")) == 120
    minutes = await store.history("A1", now - 4 * 86400, now, "minutes")
    assert minutes and min(p.t for p in minutes) >= now - 86400
    assert [e.id for e in await store.events()] == [recent]
    assert await store.black_box(old_trip) is None  # cascaded with its event
    await store.close()


async def test_size_is_bounded_without_touching_settings(tmp_path: Path) -> None:
    history = HistoryConfig(max_size_mb=8)
    store = await Storage.open(tmp_path / "pdu.db", history)
    await store.save_channel_label("A1", "kept")
    kept_event = await store.append_event(event())
    con = sqlite3.connect(store.path)
    now = minute_start(0)
    rows = [
        (series, now - m * 60, 1.0, 2.0, 3.0, 60) for series in range(1, 81) for m in range(1, 2500)
    ]
    con.executemany("INSERT INTO minutes VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.executemany("INSERT OR IGNORE INTO series (id, name) VALUES (?, ?)",
                    [(i, f"S{i}") for i in range(1, 81)])  # fmt: skip
    con.commit()
    con.close()
    await store.maintain(now=now)
    used = await asyncio.get_running_loop().run_in_executor(None, _used_bytes, store.path)
    assert used <= 8 * 1024 * 1024
    remaining = await store.history("S1", now - 3000 * 60, now, "minutes")
    assert remaining and remaining[-1].t == now - 60  # the newest were kept
    assert (await store.load_settings()).labels == {"A1": "kept"}
    assert [e.id for e in await store.events()] == [kept_event]
    assert await store.integrity_check() == "ok"
    await store.close()


def _used_bytes(path: Path) -> int:
    con = sqlite3.connect(path)
    pages, free, size = (
        con.execute(f"PRAGMA {p}").fetchone()[0]
        for p in ("page_count", "freelist_count", "page_size")
    )
    con.close()
    return (pages - free) * size


async def test_history_writes_do_not_block_the_event_loop(storage: Storage) -> None:
    t0 = minute_start(50)
    for s in range(1200):
        storage.add_history(t0 + s, {f"S{n}": float(n) for n in range(100)})
    gaps: list[float] = []

    async def heartbeat() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    started = time.perf_counter()
    await storage.flush()  # 120 000 rows on the writer thread
    elapsed = time.perf_counter() - started
    beat.cancel()
    assert len(gaps) >= 3 or elapsed < 0.05
    assert max(gaps, default=0.0) < max(0.25, elapsed / 2)


# ----------------------------------------------------------------------------- recorder


async def test_recorder_logs_events_black_box_and_history(tmp_path: Path) -> None:
    store = await Storage.open(tmp_path / "pdu.db", HistoryConfig(flush_s=0.05))
    state = UnitState(default_config(unit={"id": "smartPDU00AA01"}))
    recorder = Recorder(state, store, black_box_s=30.0)
    task = asyncio.create_task(recorder.run(sample_every_s=0.05))
    await asyncio.sleep(0.01)
    now = state.now()
    state.board_online(1, now, board_type=C.BOARD_SIM)
    state.board_info(1, Info((1, 0, 0), 1, C.BOARD_SIM, bytes(8), "A", 12, 0, 0), now)
    for _ in range(5):
        state.apply_report(1, Report([500] * 12, [0] * 12), state.now())
        state.apply_meter({"l1_current": 20.0, "l2_current": 10.0, "l3_current": 5.0}, state.now())
        await asyncio.sleep(0.05)
    state.apply_status(50, Status(C.IN_BREAKER_CLOSED, 0, 250, 1, 0, 0, 0xFFFF), state.now())
    state.apply_status(
        50, Status(C.IN_BREAKER_TRIPPED | C.IN_ESTOP, C.CAUSE_ESTOP, 250, 2, 0, 1, 0), state.now()
    )
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.flush()
    logged = await store.events()
    kinds = [e.kind for e in logged]
    assert "breaker.tripped" in kinds and "board.online" in kinds
    [trip] = [e for e in logged if e.kind == "breaker.tripped"]
    assert trip.has_black_box
    box = await store.black_box(trip.id)
    assert box is not None and box["groups"]["A"][0][1][0] == 5.0
    assert box["meter"][0][1]["l1_current"] == 20.0
    a1 = await store.history("A1", time.time() - 60, time.time() + 1, "seconds")
    assert a1 and a1[-1].avg == 5.0
    sums = await store.history("sum.L1", time.time() - 60, time.time() + 1, "seconds")
    assert sums and sums[-1].avg == pytest.approx(20.0)  # A1, A4, A7, A10 at 5 A
    meter = await store.history("meter.l1_current", time.time() - 60, time.time() + 1)
    assert meter and meter[-1].avg == 20.0
    await store.close()


async def test_recorder_keeps_up_with_a_burst_of_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of events (a script renaming channels through the API, a power loss) goes to
    the log in a few durable transactions, not one fsync each: with one per event the log
    fell seconds behind under load and a kill -9 lost that backlog (issue #5, measured by
    tests/host/test_service_kill9.py). A trip in the burst still gets its black box."""
    store = await Storage.open(tmp_path / "pdu.db")
    state = UnitState(default_config(unit={"id": "smartPDU00AA01"}))
    recorder = Recorder(state, store, black_box_s=30.0)
    transactions = [0]
    write = store._write  # the writer thread: every transaction goes through here

    async def counting(job: object) -> object:
        transactions[0] += 1
        return await write(job)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_write", counting)
    task = asyncio.create_task(recorder.run())
    await asyncio.sleep(0.01)
    witness = state.event_queue(maxsize=10_000)
    state.apply_status(50, Status(C.IN_BREAKER_CLOSED, 0, 250, 1, 0, 0, 0xFFFF), state.now())
    for i in range(300):
        state.set_channel_label(f"A{i % 12 + 1}", f"label {i}")
        if i == 150:
            state.apply_status(
                50, Status(C.IN_BREAKER_TRIPPED, C.CAUSE_OVERLOAD, 250, 2, 0, 1, 0), state.now()
            )
    emitted = 0
    while not witness.empty():
        witness.get_nowait()
        emitted += 1
    assert emitted > 300
    deadline = time.monotonic() + 20
    while recorder.events_logged < emitted and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.events_logged == emitted
    assert transactions[0] <= 4, f"{transactions[0]} transactions for {emitted} events"
    logged = list(reversed(await store.events(limit=1000)))
    labels = [e.data["new"] for e in logged if e.kind == "settings.changed"]
    assert labels == [f"label {i}" for i in range(300)]
    assert [e.has_black_box for e in logged if e.kind == "breaker.tripped"] == [True]
    assert not any(e.has_black_box for e in logged if e.kind != "breaker.tripped")
    await store.close()


def test_history_values_leave_out_stale_data() -> None:
    clock = [1000.0]
    state = UnitState(default_config(), clock=lambda: clock[0])
    state.board_online(1, clock[0], board_type=C.BOARD_SIM)
    state.board_info(1, Info((1, 0, 0), 1, C.BOARD_SIM, bytes(8), "B", 12, 0, 0), clock[0])
    state.apply_report(1, Report([100] * 12, [0] * 12), clock[0])
    state.apply_meter({"frequency": 50.0}, clock[0])
    values = history_values(state.snapshot())
    assert values["B1"] == 1.0 and values["meter.frequency"] == 50.0 and "A1" not in values
    clock[0] += 60
    values = history_values(state.snapshot())
    assert "B1" not in values and "meter.frequency" not in values


# ----------------------------------------------------------------------------- kill -9

WRITER = r"""
import asyncio, sys, time
from host.config import HistoryConfig
from host.storage.store import Storage
from host.supervision import SupervisionSettings

async def main(path):
    storage = await Storage.open(path, HistoryConfig(flush_s=0.02))
    asyncio.create_task(storage.run())
    start = int(time.time()) - 1800
    row = 0
    with open(path + ".last") as f:
        i = int(f.read() or 0)
    print("ready", flush=True)
    while True:
        i += 1
        channel = f"A{i % 12 + 1}"
        for _ in range(5):
            row += 1
            storage.add_history(start + row, {f"S{n}": i + n / 10 for n in range(60)})
        await storage.save_channel_label(channel, f"label {i}")
        await storage.save_supervision(
            channel, SupervisionSettings(True, 0.0, float(i % 63), 1.0, 0.5)
        )
        if i % 7 == 0:
            await storage.save_unit_name(f"unit {i}")
        print(f"ack {i}", flush=True)
        if i % 40 == 0:
            await storage.maintain()

asyncio.run(main(sys.argv[1]))
"""


def _run_writer_and_kill(db: Path, first: int, rng: random.Random) -> int:
    """Start a writer, SIGKILL it at a random moment; returns the last acknowledged i."""
    (Path(str(db) + ".last")).write_text(str(first))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("ready"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(60), proc.stderr.read() if proc.stderr else "writer did not start"
    time.sleep(rng.uniform(0.1, 1.2))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    reader.join(10)
    assert proc.returncode == -signal.SIGKILL
    acks = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
    assert acks, f"no write acknowledged before the kill: {proc.stderr and proc.stderr.read()}"
    return acks[-1]


@pytest.mark.slow
def test_kill_minus_9_loses_no_acknowledged_setting(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    db = tmp_path / "pdu.db"
    last = 0
    for _round in range(3):  # each restart also recovers the previous crash
        first = last + 1000  # numbers of this round never repeat the previous round's
        last = _run_writer_and_kill(db, first, rng)
        assert last > first, f"seed {seed}"
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"seed {seed}"
        labels = dict(con.execute("SELECT channel, label FROM channel_labels"))
        supervision = dict(con.execute("SELECT channel, max_a FROM channel_supervision"))
        name = con.execute("SELECT value FROM settings WHERE key = 'unit_name'").fetchone()
        samples = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        con.close()
        for i in range(max(first + 1, last - 11), last + 1):
            # The last acknowledged write of each channel is there (or the one in flight).
            channel = f"A{i % 12 + 1}"
            stored = int(labels[channel].split()[1])
            in_flight = last + 1
            assert stored == i or (stored == i + 12 == in_flight), (seed, channel, i, stored)
            allowed = {float(i % 63)}
            if channel == f"A{in_flight % 12 + 1}":
                allowed.add(float(in_flight % 63))
            assert supervision[channel] in allowed, (seed, channel, i)
        named = [i for i in range(first + 1, last + 1) if i % 7 == 0]
        if named:
            assert name is not None
            assert int(json.loads(name[0]).split()[1]) in (named[-1], last + 1), seed
        assert samples > 0

    # And the service can open it again and read everything back.
    async def reopen() -> None:
        store = await Storage.open(db)
        settings = await store.load_settings()
        assert len(settings.labels) == 12 and len(settings.supervision) == 12
        assert await store.integrity_check() == "ok"
        await store.close()

    asyncio.run(reopen())


async def test_history_batches_are_fsynced_every_few_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """History commits with synchronous=NORMAL (no fsync) except one batch at least every
    HISTORY_DURABLE_S, committed with FULL: in WAL mode that fsyncs the log and every batch
    before it, so a power cut loses seconds of history, not everything since a checkpoint."""
    import host.storage.history as storage_module

    clock = [1000.0]
    monkeypatch.setattr(storage_module.time, "monotonic", lambda: clock[0])
    store = await Storage.open(tmp_path / "pdu.db")
    levels: list[int] = []
    try:
        for second in range(12):  # one flush a second for 12 s
            store.add_history(time.time() + second, {"A1": float(second)})
            await store.flush()
            level = await store._write(lambda: store._w.execute("PRAGMA synchronous").fetchone()[0])
            levels.append(level)
            clock[0] += 1.0
        # first batch, then every 5 s: 3 fsynced batches in 12 s; NORMAL (1) restored after
        assert store.history_syncs == 3
        assert set(levels) == {1}
    finally:
        await store.close()
