"""Benchmarks run N times: one run can neither flatter nor condemn a figure.

Every numeric figure is reported as the **median** of the runs under its own name, with the
**worst** run beside it (``<name>_worst``: the highest for a latency, a CPU share or a heap,
the lowest for a rate or a ratio) and, for the headline figures, every run
(``<name>_runs``). The machine's load average at the start and the end goes with them
(``<bench>.load_average_start`` / ``_end``: 1, 5 and 15 minutes), so a reader can tell a busy
machine from a slow program.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import Any

# Figures whose every run is printed (the budgets the README tracks).
HEADLINES = frozenset(
    {
        "web.update_latency_ms_p99",
        "e2e.latency_ms_p99",
        "host.cpu_pct_one_core",
        "bus.cycle_rate_ratio_vs_modbus",
        "protocol.decode_frames_per_s",
        "peers.full_view_s.n10",
        "export.metrics_scrape_ms",
        "export.mqtt_msgs_per_s",
    }
)
# Substrings that say which way is worse; a figure matching neither gets no _worst.
HIGHER_IS_WORSE = ("latency", "_ms", "cpu", "overrun", "error", "heap", "_s.", "_s_", "lost")
LOWER_IS_WORSE = ("per_s", "ratio", "rate", "hz")


def worse_is_higher(name: str) -> bool | None:
    """True when a larger value is worse, False when a smaller one is, None when unknown."""
    if any(part in name for part in LOWER_IS_WORSE):
        return False
    if any(part in name for part in HIGHER_IS_WORSE) or name.endswith("_s"):
        return True
    return None


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each numeric figure over ``runs``, its worst run, and the headline runs."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(key for run in runs for key in run):
        values = [run[name] for run in runs if name in run]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) != len(values) or not numbers:
            out[name] = values[-1]  # text, lists, flags: the last run's
            continue
        direction = worse_is_higher(name)
        if name.endswith("_worst") and direction is not None:
            # a bench that repeats inside reports its own worst: the worst of those, not a
            # median of worsts beside a "_worst_worst"
            out[name] = max(numbers) if direction else min(numbers)
            continue
        median = statistics.median(numbers)
        out[name] = round(median, 3) if isinstance(median, float) else median
        own_worst = any(f"{name}_worst" in run for run in runs)
        if len(numbers) > 1:
            if direction is not None and not own_worst:
                out[f"{name}_worst"] = max(numbers) if direction else min(numbers)
            if name in HEADLINES:
                out[f"{name}_runs"] = numbers
    return out


def repeated(name: str, run: Callable[[], dict[str, Any]], reps: int) -> dict[str, Any]:
    """``run()`` ``reps`` times, summarised, with the load average around the whole series."""
    if reps < 1:
        raise ValueError("a benchmark runs at least once")
    start = load_average()
    runs = [run() for _ in range(reps)]
    figures = summarise(runs)
    figures[f"{name}.repetitions"] = reps
    figures[f"{name}.load_average_start"] = start
    figures[f"{name}.load_average_end"] = load_average()
    return figures
