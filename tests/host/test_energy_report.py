"""The energy report's arithmetic on a database filled by hand: the meter's register delta
split by its per-phase power, a register reset, nominal voltage when the meter recorded
none, 1 min averages beyond the 1 s samples, and warnings and alarms of the span."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from host.analysis.energy import OutputInfo, build_report, windows
from host.config import HistoryConfig
from host.state import Event, EventKind, Severity
from host.storage.store import Storage

OUTPUTS = [OutputInfo("A1", "A", "L1", "amp rack"), OutputInfo("A2", "A", "L2"),
           OutputInfo("B3", "B", "L3")]  # fmt: skip


def test_windows_minutes_then_seconds() -> None:
    now = 1_700_000_000.0
    spans = windows(now - 7200, now, now, 3600)
    assert spans[0].resolution == "minutes" and spans[-1].resolution == "seconds"
    assert spans[0].start == int(now - 7200) and spans[-1].end == int(now)
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))


async def test_register_split_by_phase_power_and_nominal_voltage(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        now = int(time.time())
        start = now - 600
        for t in range(start, now):
            values = {"A1": 10.0, "A2": 5.0, "B3": 2.0}
            if t < now - 300:  # the meter for the first half only
                # 3 kW on L1, 1 kW on L2, 0.5 kW on L3: 4.5 kW = 1.25 Wh/s.
                values.update({"meter.l1_voltage": 240.0, "meter.l2_voltage": 240.0,
                               "meter.l3_voltage": 240.0, "meter.l1_power": 3000.0,
                               "meter.l2_power": 1000.0, "meter.l3_power": 500.0,
                               "meter.import_energy": 100.0 + (t - start) * 4.5 / 3600,
                               "meter.l1_current": 12.5})  # fmt: skip
            storage.add_history(t, values)
        await storage.flush()
        await storage.append_events(
            [
                (
                    Event(
                        start + 10.0,
                        EventKind.CHANNEL_SLIGHT_OVERLOAD,
                        Severity.WARNING,
                        "smartPDU0EN001",
                        "A",
                        "A1",
                        "slight overload",
                    ),
                    None,
                ),
                (
                    Event(
                        start + 20.0,
                        EventKind.BOARD_ONLINE,
                        Severity.INFO,
                        "smartPDU0EN001",
                        "A",
                        None,
                        "online",
                    ),
                    None,
                ),
            ]
        )
        report = await build_report(
            storage, OUTPUTS, start, now, unit_id="smartPDU0EN001", nominal_voltage_v=230.0
        )
    finally:
        await storage.close()
    # The register counted 299 s of readings, no reading in the last 300 s: not scaled.
    delta = 299 * 4.5 / 3600
    assert report.meter_total_kwh == pytest.approx(delta, rel=1e-6)
    assert report.meter_coverage_pct == pytest.approx(50.0, abs=0.5)
    l1, _l2, l3 = report.phases
    assert l1.meter_kwh == pytest.approx(delta * 3000 / 4500, rel=1e-6)
    assert l3.meter_kwh == pytest.approx(delta * 500 / 4500, rel=1e-6)
    assert "split by its per-phase power" in l1.meter_method
    assert l1.peak_meter_a == 12.5
    a1 = next(c for c in report.channels if c.id == "A1")
    # 300 s at 240 V (meter) and 300 s at 230 V (nominal), 10 A.
    assert a1.kwh == pytest.approx(10 * (240 * 300 + 230 * 300) / 3.6e6)
    assert a1.voltage_source == "meter, nominal for 50 %" and a1.peak_a == 10.0
    group_a = next(g for g in report.groups if g.group == "A")
    assert group_a.peak_a == pytest.approx(15.0)
    assert group_a.phase_kwh["L2"] == pytest.approx(5 * (240 * 300 + 230 * 300) / 3.6e6)
    assert [e.kind for e in report.alarms] == ["channel.slight_overload"]
    assert any("cover 50 %" in note for note in report.notes)


async def test_a_register_reset_and_minutes(tmp_path: Path) -> None:
    history = HistoryConfig(keep_samples_s=3600)
    storage = await Storage.open(tmp_path / "db.sqlite", history)
    try:
        now = int(time.time()) // 60 * 60
        start = now - 3000
        for t in range(start, now):
            energy = 50.0 + (t - start) / 3600 if t < start + 1500 else (t - start - 1500) / 3600
            storage.add_history(t, {"meter.import_energy": energy, "meter.l1_power": 3600.0,
                                    "A1": 4.0})  # fmt: skip
        await storage.flush()
        await storage.maintain(now + 1)  # the minutes
        seconds = await build_report(storage, OUTPUTS, start, now, unit_id="smartPDU0EN001")
        later = await build_report(
            storage, OUTPUTS, start, now, unit_id="smartPDU0EN001", now=now + 7200
        )
    finally:
        await storage.close()
    # 1 kWh per hour; the reset loses only the step from the last reading to 0.
    for report in (seconds, later):
        assert report.meter_total_kwh == pytest.approx(3000 / 3600, rel=0.01)
        assert report.phases[0].meter_kwh == pytest.approx(report.meter_total_kwh)
        assert any("restarted 1 time" in note for note in report.notes)
    assert seconds.resolution == "seconds" and later.resolution == "minutes"
    a1 = next(c for c in later.channels if c.id == "A1")
    assert a1.kwh == pytest.approx(4 * 230 * 3000 / 3.6e6, rel=0.01)
    assert a1.voltage_source == "nominal"
