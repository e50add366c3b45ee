"""Overload classifier (firmware/overload.py) on the MicroPython unix port, in simulated time."""

from __future__ import annotations

import json

import pytest

from tests.mpy import run_micropython

# Feeds per-cycle currents to a classifier of `n` channels; `drive(seconds, amps...)` runs
# 50 Hz cycles and returns the (time, state, time_to_trip) of every cycle of channel 0.
HARNESS = """
import json
from array import array
from firmware import overload
from firmware.overload import OFF, OK, SLIGHT, SERIOUS, TRIPPED, NO_TRIP
PERIOD = 20000
IN = 16000000  # rating, uA

class Driver:
    def __init__(self, classifier, record=True):
        self.c = classifier
        self.current = array('i', [0] * classifier.nchan)
        self.t_us = 0
        self.record = record
        self.trace = []  # every cycle if recording, else only changes of state

    def cycle(self, *amps):
        for ch, a in enumerate(amps):
            self.current[ch] = int(a * 1000000)
        self.c.update(PERIOD, self.current)
        self.t_us += PERIOD
        s = self.c.state[0]
        if self.record or not self.trace or self.trace[-1][1] != s:
            self.trace.append((self.t_us, s, self.c.time_to_trip_ds[0]))

    def drive(self, seconds, *amps):
        for _ in range(int(seconds * 50 + 0.5)):
            self.cycle(*amps)

def transitions(trace):
    out = []
    for t, s, _ in trace:
        if not out or out[-1][1] != s:
            out.append((t, s))
    return out
"""


def mpy(body: str) -> object:
    return json.loads(run_micropython(HARNESS + body).strip().splitlines()[-1])


def test_state_codes_are_the_wire_format() -> None:
    codes = mpy("print(json.dumps([OFF, OK, SLIGHT, SERIOUS, TRIPPED, NO_TRIP]))")
    assert codes == [0, 1, 2, 3, 4, 0xFFFF]


def test_sustained_17_amps_is_a_slight_overload_for_ever() -> None:
    result = mpy(
        """
d = Driver(overload.OverloadClassifier(nchan=1), record=False)
d.drive(2, 10)
d.drive(600, 17)
print(json.dumps(dict(changes=transitions(d.trace), ttt=[d.c.time_to_trip_ds[0]])))
"""
    )
    # OFF -> OK after 3 cycles; SLIGHT one second into 17 A; nothing more in ten minutes
    assert [s for _, s in result["changes"]] == [0, 1, 2]
    t_slight = result["changes"][2][0] / 1e6
    assert t_slight == pytest.approx(2 + 1.0, abs=0.05)
    assert set(result["ttt"]) == {0xFFFF}  # may-trip zone: no trip predicted


def test_24_amps_is_serious_with_time_to_trip_inside_the_band() -> None:
    result = mpy(
        """
d = Driver(overload.OverloadClassifier(nchan=1))
d.drive(1, 10)
start = d.t_us
d.drive(30, 24)
print(json.dumps(dict(start=start, trace=d.trace)))
"""
    )
    start = result["start"]
    trace = [(t - start, s, ttt) for t, s, ttt in result["trace"] if t > start]
    serious = [t for t, s, _ in trace if s == 3]
    # 150 %: the curve's band is 6..60 s; serious once the breaker may trip (tmin = 6 s)
    assert serious[0] / 1e6 == pytest.approx(6.0, abs=0.15)
    assert [s for _, s, _ in trace[:60]][-1] == 2  # slight before that
    first = trace[0][2] / 10
    assert 6 <= first <= 60  # predicted trip time at the onset
    assert first == pytest.approx((6 * 60) ** 0.5, rel=0.05)  # log-middle of the band
    for t, s, ttt in trace:
        if s == 3 and ttt:
            assert 6 <= t / 1e6 + ttt / 10 <= 60  # elapsed + remaining stays in the band
    remaining = [ttt for _, _, ttt in trace]
    assert remaining == sorted(remaining, reverse=True)  # counts down


@pytest.mark.parametrize("split", [False, True])
def test_8_ms_pulse_of_12_times_rating_raises_no_alarm(split: bool) -> None:
    # 12 In for 8 ms within one cycle, or split 4 + 4 ms over two cycles
    # on top of a 4 A load; powers add: cycle RMS = sqrt(4^2 + 192^2 * ms / 20)
    pulse = (
        "d.cycle((16 + 192**2 * 4 / 20) ** 0.5); d.cycle((16 + 192**2 * 4 / 20) ** 0.5)"
        if split
        else "d.cycle((16 + 192**2 * 8 / 20) ** 0.5)"
    )
    result = mpy(
        f"""
d = Driver(overload.OverloadClassifier(nchan=1))
d.drive(2, 4)
for _ in range(20):  # again and again, a second apart
    {pulse}
    d.drive(1, 4)
print(json.dumps(transitions(d.trace)))
"""
    )
    assert [s for _, s in result] == [0, 1]


def test_pulse_longer_than_the_curve_allows_is_serious() -> None:
    result = mpy(
        """
d = Driver(overload.OverloadClassifier(nchan=1))
d.drive(2, 4)
d.drive(0.1, 16 * 12)  # 100 ms at 12 In: the curve trips from 10 ms
d.drive(0.5, 4)
print(json.dumps(transitions(d.trace)))
"""
    )
    states = [s for _, s in result]
    assert states[:3] == [0, 1, 3]
    assert result[2][0] / 1e6 == pytest.approx(2.06, abs=0.001)  # third cycle: 50 ms


def test_collapse_after_an_overload_is_a_trip_and_current_returning_clears_it() -> None:
    result = mpy(
        """
c = overload.OverloadClassifier(nchan=3)
d = Driver(c)
d.drive(1, 10, 10, 10)
d.drive(8, 24, 17, 10)   # ch0 serious, ch1 slight, ch2 ok
before = list(c.state)
d.drive(0.04, 0, 0, 0)   # two cycles: the breakers opened (ch2: switched off)
after = list(c.state)
d.drive(1, 0, 0, 0)
later = list(c.state)
d.drive(1, 5, 0, 0)      # ch0 reset and loaded again
print(json.dumps(dict(before=before, after=after, later=later, end=list(c.state),
    ttt=list(c.time_to_trip_ds))))
"""
    )
    assert result["before"] == [3, 2, 1]
    assert result["after"] == [4, 4, 1]  # OK -> OFF needs 200 ms: no trip assumed
    assert result["later"] == [4, 4, 0]
    assert result["end"] == [1, 4, 0]
    assert result["ttt"] == [0xFFFF] * 3


def test_hysteresis_keeps_states_steady_around_thresholds() -> None:
    result = mpy(
        """
c = overload.OverloadClassifier(nchan=2)
d = Driver(c)
d.drive(1, 10, 10)
for i in range(500):  # ch0 wobbles around the rating, ch1 around 97 % after going slight
    d.cycle(16 + (0.3 if i % 3 else -0.3), 17 if i < 100 else 15.6 + (0.1 if i % 2 else -0.1))
wobble = transitions(d.trace)
states_1 = list(c.state)
d.drive(2, 15, 15)
print(json.dumps(dict(wobble=wobble, mid=states_1, end=list(c.state))))
"""
    )
    # ch0: 16.3 A two cycles in three never holds for the 1 s slight needs
    assert [s for _, s in result["wobble"]] == [0, 1]
    assert result["mid"] == [1, 2]  # ch1 stays slight while not clearly under 97 %
    assert result["end"] == [1, 1]  # below 97 % for the 1 s hold: back to OK


def test_serious_needs_a_clear_drop_and_a_hold_to_clear() -> None:
    result = mpy(
        """
d = Driver(overload.OverloadClassifier(nchan=1))
d.drive(1, 10)
d.drive(8, 24)
d.drive(3, 19.5)      # 122 %: not below 95 % of must-trip (19 A): stays serious
a = d.c.state[0]
d.drive(0.5, 18)      # below 19 A, but for less than the hold
b = d.c.state[0]
d.drive(1, 18)        # held: slight (still above the rating)
c = d.c.state[0]
d.drive(1.5, 12)
print(json.dumps([a, b, c, d.c.state[0]]))
"""
    )
    assert result == [3, 3, 2, 1]


def test_breaker_model_remembers_and_cools_down() -> None:
    result = mpy(
        """
c = overload.OverloadClassifier(nchan=1, reset_ms=10000)
d = Driver(c)
d.drive(1, 10)
d.drive(4, 24)           # 4 s of the 6 s a 150 % overload needs
heat = c.fraction_pct(0)
d.drive(0.5, 10)          # briefly back under the rating: cools 5 % of full scale
d.drive(2.6, 24)         # the remaining ~2 s plus what cooled make it serious
first = transitions(d.trace)
d.drive(30, 10)          # long rest: fully reset
d.drive(4, 24)
print(json.dumps(dict(heat=heat, first=[s for _, s in first], cold=c.state[0])))
"""
    )
    assert result["heat"] == pytest.approx(100 * 4 / (6 * 60) ** 0.5, abs=2)
    assert result["first"][-1] == 3
    assert result["cold"] == 2  # after a full reset 4 s of 150 % are only slight again


def test_curve_is_interpolated_log_log_and_configurable() -> None:
    result = mpy(
        """
c = overload.OverloadClassifier(nchan=1)
at = lambda pct: c.trip_times_ms(IN * pct // 100)
default = dict(p200=at(200), p300=at(300), p1200=at(1200), p110=at(110))
mine = overload.OverloadClassifier(
    nchan=1, rating_ma=10000, curve=[(130, 5000, 50000), (500, 100, 1000)])
custom = mine.trip_times_ms(10000 * 1000 * 3)
errors = []
bad_curves = ([], [(100, 1, 2)], [(150, 10, 5)], [(200, 10, 100), (150, 5, 50)],
              [(150, 10, 100), (200, 20, 100)])
for bad in bad_curves:
    try:
        overload.OverloadClassifier(curve=bad)
    except overload.CurveError:
        errors.append(1)
print(json.dumps(dict(default=default, custom=custom, errors=len(errors))))
"""
    )
    d = result["default"]
    assert d["p110"] is None  # may-trip zone: no curve
    tmin, ttyp = d["p200"]
    assert tmin == pytest.approx(2000, rel=0.05)
    assert ttyp == pytest.approx((2000 * 20000) ** 0.5, rel=0.05)
    # halfway between 200 % and 400 % on a log scale: geometric means of the rows
    tmin, _ = d["p300"]
    import math

    x = math.log(1.5) / math.log(2)
    assert tmin == pytest.approx(2000 * (200 / 2000) ** x, rel=0.05)
    assert d["p1200"] == [10, 50]  # flat beyond the last row
    x = math.log(300 / 130) / math.log(500 / 130)
    assert result["custom"][0] == pytest.approx(5000 * (100 / 5000) ** x, rel=0.05)
    assert result["errors"] == 5


def test_update_allocates_nothing() -> None:
    out = run_micropython(
        HARNESS
        + """
import micropython
c = overload.OverloadClassifier()
current = array('i', [0] * 12)
def run(n):
    for i in range(n):
        for ch in range(12):
            current[ch] = (ch * 3000000 + i * 7919) % 40000000
        c.update(PERIOD, current)
run(600)
micropython.heap_lock()
try:
    run(600)
finally:
    micropython.heap_unlock()
print(list(c.state))
"""
    )
    assert "3" in out  # some channel got serious


SCENARIO = """
import json
from array import array
from firmware import rms, loadsim, overload
from firmware.loadsim import OFF, RESISTIVE, LED
BLOCK = 64
buf = array('H', bytearray(2 * rms.STRIDE * BLOCK))
sim = loadsim.LoadSim(mains_mhz=50000, seed=21)
engine = rms.RmsEngine()
classifier = overload.OverloadClassifier()
timeline = []
t_us = [0]

def run(seconds):
    for _ in range(int(seconds * 1e6 / rms.SAMPLE_US / BLOCK)):
        sim.fill(buf, 0, BLOCK)
        pos = 0
        while pos < BLOCK:
            pos = engine.feed(buf, pos, BLOCK)
            if engine.cycle_done:
                classifier.update(engine.period_us, engine.cycle_ua)
                t_us[0] += engine.period_us
                s = classifier.state[0]
                if not timeline or timeline[-1][1] != s:
                    timeline.append((t_us[0], s, classifier.time_to_trip_ds[0],
                                     engine.cycle_ua[0] // 1000))

run(1)                                   # nothing connected
sim.set_load(0, LED, 8000); run(2)       # a rack of LED fixtures
sim.set_load(0, RESISTIVE, 17000); run(5)    # someone adds a heater: slight
sim.set_load(0, RESISTIVE, 24000); run(8)    # and another: serious
sim.set_load(0, OFF); run(1)             # the RCBO opens
print(json.dumps(timeline))
"""


def test_scripted_load_goes_off_ok_slight_serious_tripped() -> None:
    """Must-show 1: waveforms -> RMS engine -> classifier, in simulated time."""
    timeline = json.loads(run_micropython(SCENARIO).strip())
    assert [s for _, s, _, _ in timeline] == [0, 1, 2, 3, 4]
    times = [t / 1e6 for t, _, _, _ in timeline]
    assert times[1] == pytest.approx(1.07, abs=0.05)  # OK within a few cycles of the load
    assert times[2] == pytest.approx(3 + 1, abs=0.1)  # SLIGHT after 1 s above 16 A
    assert times[3] == pytest.approx(8 + 6, abs=0.2)  # SERIOUS once 150 % outlasts tmin
    assert times[4] == pytest.approx(16, abs=0.05)  # TRIPPED within a cycle or two
    _, _, ttt, amps = timeline[3]
    assert amps == pytest.approx(24000, rel=0.01)
    assert 6 <= 6 + ttt / 10 <= 60
