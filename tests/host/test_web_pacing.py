"""The live view's pacing: jitter waits for the display refresh, a step goes out at once
(``host.web.pacing`` and the hub that uses it, on a clock of the test's own)."""

from __future__ import annotations

import math
import random
from typing import Any

from host.web.live import LiveHub
from host.web.pacing import HISTORY, FramePacer
from host.web.units import UnitDirectory
from tests.host.test_live_hub import FakeClock, QuietSocket
from tests.host.test_web_api import feed, make_state


def view_of(amps: dict[str, float | None]) -> dict[str, Any]:
    return {"channels": {cid: {"current_a": a} for cid, a in amps.items()}}


def steps_in(series: list[float]) -> int:
    """How many builds of one channel's ``series`` the pacer calls urgent."""
    pacer = FramePacer()
    urgent = 0
    for n, amps in enumerate(series):
        if n:
            patch = view_of({"X1": amps})
            urgent += pacer.split(patch, {})[0]
        pacer.observe(view_of({"X1": amps}))
    return urgent - 1  # the second build has a one-value history: always news


def test_noise_a_fade_and_a_flickering_digit_are_jitter() -> None:
    rng = random.Random(3)
    noisy = [round(7.5 * (1 + rng.uniform(-0.003, 0.003)), 2) for _ in range(400)]
    gauss = [round(7.5 * (1 + rng.gauss(0, 0.001)), 2) for _ in range(400)]
    fade = [round(6 * (0.5 + 0.5 * math.sin(2 * math.pi * n / 400)), 2) for n in range(400)]
    flicker = [1.51 if rng.random() < 0.3 else 1.52 for _ in range(400)]
    assert steps_in(noisy) == 0
    # A few builds in 400 are news: noise at the scale of the last digit making a new
    # extreme, a fade leaving its turnarounds (where it sat almost still), a flicker after
    # a second on one digit. Each is a frame of that one number (the others' jitter stays
    # held): cheap, and no number is ever late.
    assert steps_in(gauss) <= 3
    assert steps_in(fade) <= 4
    assert steps_in(flicker) <= 6


def test_a_channel_that_sat_still_moving_by_one_digit_is_a_step() -> None:
    series = [1.01] * 5 + [1.02] * 5 + [1.03] * 5 + [1.02]
    pacer = FramePacer()
    verdicts = []
    for amps in series:
        verdicts.append(pacer.split(view_of({"X1": amps}), {})[0])
        pacer.observe(view_of({"X1": amps}))
    # 1.01 -> 1.02 and 1.02 -> 1.03 leave the range; back to 1.02 is inside it but a jump
    # after sitting still
    assert [n for n, urgent in enumerate(verdicts) if urgent and n > 1] == [5, 10, 15]


def test_a_step_on_a_noisy_channel_and_news_after_no_data_are_urgent() -> None:
    rng = random.Random(5)
    pacer = FramePacer()
    for _ in range(HISTORY):
        pacer.observe(view_of({"X1": round(8.0 * (1 + rng.uniform(-0.003, 0.003)), 2)}))
    assert pacer.split(view_of({"X1": 8.0}), {})[0] is False
    assert pacer.split(view_of({"X1": 8.4}), {})[0] is True  # +5 %: a load switched on
    for _ in range(5):
        pacer.observe(view_of({"X1": 8.4}))
    assert pacer.split(view_of({"X1": 8.0}), {})[0] is True  # off again, inside the range
    pacer.observe(view_of({"X1": None}))
    assert pacer.split(view_of({"X1": 8.0}), {})[0] is True


def test_anything_but_numbers_is_urgent() -> None:
    pacer = FramePacer()
    for _ in range(HISTORY):
        pacer.observe(view_of({"X1": 2.0}))
    assert pacer.split({"taken_at": 1.0, "groups": {"A": {"board": {"last_seen": 1.0}}}}, {}) == (
        False,
        set(),
        {"A"},
    )
    assert pacer.split({"channels": {"X1": {"state": "slight"}}}, {})[0] is True
    assert pacer.split({"channels": {"X1": {"crest": 1.5}}}, {}) == (False, {"X1"}, set())
    assert pacer.split({"groups": {"A": {"board": {"online": False}}}}, {})[0] is True
    assert pacer.split({"meter": {"readings": {}}}, {})[0] is True
    assert pacer.split({"events": 3}, {})[0] is True
    # Counters that move by themselves: the virtual front panel's DATA TX counts the frames
    # sent (urgent, it would send itself at every build), the status node's time stamp.
    assert pacer.split({"frontpanel": {"tx": 7}, "mains": {"updated_at": 2.0}}, {})[0] is False
    assert pacer.split({"groups": {"A": {"board": {"uptime_s": 24}}}}, {})[0] is False
    assert pacer.split({"frontpanel": {"healthy": False}}, {})[0] is True
    assert pacer.split({"mains": {"cause": "estop"}}, {})[0] is True
    # Pane A's unit list: its units' currents are jitter, anything else is news.
    row = {"id": "u1", "l1": 10.0, "l2": 9.0, "l3": 8.0, "n": 1.0, "online": True}
    shown = {"units": [row]}
    assert pacer.split({"units": [{**row, "l1": 10.1}]}, shown)[0] is False
    assert pacer.split({"units": [{**row, "online": False}]}, shown)[0] is True
    assert pacer.split({"units": [row, {**row, "id": "u2"}]}, shown)[0] is True


def test_the_hub_holds_jitter_and_sends_a_step_without_it() -> None:
    clock = FakeClock(100.0)
    state = make_state()
    hub = LiveHub(state, UnitDirectory(1), min_interval_s=0.05, refresh_s=0.5, clock=clock)
    hub.add(QuietSocket())  # type: ignore[arg-type]
    rng = random.Random(1)
    for _ in range(HISTORY):  # A1 steady, A2 and B1 noisy; each build a refresh
        clock.now += 0.6
        feed(state, 1, [5.0, round(3.0 * (1 + rng.uniform(-0.003, 0.003)), 2)] + [0.0] * 10)
        feed(state, 2, [round(7.0 * (1 + rng.uniform(-0.003, 0.003)), 2)] + [0.0] * 11)
        hub.publish(paced=True)  # None when they round as before
    before = hub.frame
    assert before is not None
    clock.now += 0.05
    jitter = round(3.0 * (1 + 0.002), 2)
    if jitter == before.view["channels"]["A2"]["current_a"]:
        jitter = round(3.0 * (1 - 0.002), 2)
    feed(state, 1, [5.0, jitter] + [0.0] * 10)
    assert hub.publish(paced=True) is None  # jitter alone, the refresh is not due
    assert hub.stats.held_builds >= 1

    clock.now += 0.05
    feed(state, 1, [9.0, jitter] + [0.0] * 10)  # A1 steps: out at once, A2 as it was
    b1 = 7.01 if before.view["channels"]["B1"]["current_a"] != 7.01 else 6.99
    feed(state, 2, [b1] + [0.0] * 11)  # B1 jitters: B's total moves, waits too
    step = hub.publish(paced=True)
    assert step is not None
    assert step.view["channels"]["A1"]["current_a"] == 9.0
    assert step.view["channels"]["A2"] == before.view["channels"]["A2"]
    assert step.patch_text is not None and '"A2"' not in step.patch_text
    assert step.view["groups"]["A"] != before.view["groups"]["A"]  # the stepped group's total
    assert step.view["channels"]["B1"] == before.view["channels"]["B1"]
    assert step.view["groups"]["B"] == before.view["groups"]["B"]  # the others wait
    assert step.view["units"] == before.view["units"]  # pane A's sums (no meter) wait too

    clock.now = before.published_at + 0.5 + 0.01  # the refresh: A2's jitter goes out
    feed(state, 1, [9.0, jitter] + [0.0] * 10)
    refresh = hub.publish(paced=True)
    assert refresh is not None and refresh.view["channels"]["A2"]["current_a"] == jitter
    assert refresh.view["channels"]["B1"]["current_a"] == b1
    assert refresh.view["groups"]["B"] != before.view["groups"]["B"]
    assert refresh.view["units"] != before.view["units"]
    assert hub.stats.refresh_frames >= 1


def test_unpaced_publish_sends_everything() -> None:
    clock = FakeClock(100.0)
    state = make_state()
    hub = LiveHub(state, UnitDirectory(1), min_interval_s=0.05, refresh_s=3600.0, clock=clock)
    hub.add(QuietSocket())  # type: ignore[arg-type]
    assert hub.publish() is not None
    clock.now += 0.01
    feed(state, 1, [1.0] + [0.0] * 11)
    frame = hub.publish()
    assert frame is not None and frame.view["channels"]["A1"]["current_a"] == 1.0
