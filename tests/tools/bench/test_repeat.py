"""Benchmarks repeated: median, worst run, headline runs and the load average."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tools import cli
from tools.bench import repeat


def test_median_and_worst_follow_the_direction_of_each_figure() -> None:
    runs: list[dict[str, Any]] = [
        {"web.update_latency_ms_p99": 80.0, "protocol.decode_frames_per_s": 50_000, "note": "a"},
        {"web.update_latency_ms_p99": 140.0, "protocol.decode_frames_per_s": 61_000, "note": "b"},
        {"web.update_latency_ms_p99": 95.0, "protocol.decode_frames_per_s": 58_000, "note": "c"},
    ]
    out = repeat.summarise(runs)
    assert out["web.update_latency_ms_p99"] == 95.0
    assert out["web.update_latency_ms_p99_worst"] == 140.0  # a latency: the highest
    assert out["web.update_latency_ms_p99_runs"] == [80.0, 140.0, 95.0]
    assert out["protocol.decode_frames_per_s"] == 58_000
    assert out["protocol.decode_frames_per_s_worst"] == 50_000  # a rate: the lowest
    assert out["note"] == "c"
    assert "note_worst" not in out


def test_a_worst_reported_by_the_bench_itself_is_the_worst_of_the_runs() -> None:
    runs: list[dict[str, Any]] = [
        {"export.metrics_scrape_ms_worst": 8.0, "export.metrics_scrape_ms": 7.4},
        {"export.metrics_scrape_ms": 6.9, "export.metrics_scrape_ms_worst": 9.6},
        {"export.metrics_scrape_ms": 7.1, "export.metrics_scrape_ms_worst": 7.5},
    ]
    out = repeat.summarise(runs)
    assert out["export.metrics_scrape_ms"] == 7.1
    assert out["export.metrics_scrape_ms_worst"] == 9.6  # not the median of the worsts (8.0)
    assert not any(key.endswith("_worst_worst") for key in out)


def test_directions() -> None:
    assert repeat.worse_is_higher("e2e.latency_ms_p99") is True
    assert repeat.worse_is_higher("peers.full_view_s.n10") is True
    assert repeat.worse_is_higher("bus.cycle_rate_ratio_vs_modbus") is False
    assert repeat.worse_is_higher("firmware.adc_rate_hz_rp2") is False
    assert repeat.worse_is_higher("web.pages") is None


def test_smartpdu_bench_repeats_and_records_the_load(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = iter([3.0, 1.0, 2.0])
    monkeypatch.setitem(cli.BENCHMARKS, "web", lambda: {"web.update_latency_ms_p99": next(calls)})
    assert cli.main(["bench", "--json", "--reps", "3", "web"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["web.update_latency_ms_p99"] == 2.0
    assert figures["web.update_latency_ms_p99_worst"] == 3.0
    assert figures["web.repetitions"] == 3
    assert len(figures["web.load_average_start"]) == 3
    assert len(figures["web.load_average_end"]) == 3
    assert cli.main(["bench", "--reps", "0", "web"]) == 2
