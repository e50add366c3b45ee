"""Scenario files: the shipped shows load, mistakes are named, the time line expands as
written, and the load shapes the meter is given are the firmware's own waveforms."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from tests.mpy import run_micropython
from tools.virtual.scenario import (
    AUDIO_RMS_FRACTION,
    KINDS,
    PRESETS,
    BoardPlug,
    BusErrors,
    ChannelId,
    EndOverload,
    Estop,
    LoadSpec,
    MeterOffline,
    NeutralLost,
    Overload,
    PowerLoss,
    ResetBreaker,
    ScenarioClock,
    ScenarioError,
    SetAux,
    SetLoad,
    Trip,
    kind_shape,
    load_scenario,
    loads_scenario,
    parse_channels,
    parse_time,
    scenario_names,
    spectrum_of,
)

HEAD = """
[scenario]
model = 48
"""


# ---------------------------------------------------------------------- shipped scenarios


def test_the_required_scenarios_are_shipped() -> None:
    assert {"rehearsal", "overload", "faults"} <= set(scenario_names())


@pytest.mark.parametrize("name", scenario_names())
def test_each_shipped_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.model in (36, 48, 72)
    assert len(scenario.loads) == 12 * len(scenario.groups)
    assert any(not spec.is_off for spec in scenario.loads.values())
    if name in ("rehearsal", "overload", "faults"):
        assert scenario.timeline, "a show has a time line"
    if scenario.loop:
        assert scenario.length is not None
        assert all(0 <= step.at <= scenario.length for step in scenario.timeline)


def test_rehearsal_is_a_lively_48_without_faults() -> None:
    scenario = load_scenario("rehearsal")
    assert scenario.model == 48 and scenario.groups == "ABCD" and scenario.loop
    actions = [step.action for step in scenario.timeline]
    kinds = {
        spec.kind for action in actions if isinstance(action, SetLoad) for spec in [action.load]
    } | {spec.kind for spec in scenario.loads.values()}
    assert {"led", "dimmer", "smps", "motor", "audio"} <= kinds
    # Faults are for the other scenarios; a mild overload warning is all the rehearsal has.
    faults = (Trip, Estop, NeutralLost, BoardPlug, MeterOffline, PowerLoss, BusErrors)
    assert not [a for a in actions if isinstance(a, faults)]
    overloads = [a for a in actions if isinstance(a, Overload)]
    assert overloads and all(a.amps < 16 * 1.25 for a in overloads)
    assert sum(isinstance(a, EndOverload) for a in actions) == len(overloads)
    # Looks change often: no gap of more than 40 s without a cue.
    times = sorted({step.at for step in scenario.timeline if step.note})
    gaps = [b - a for a, b in zip([0.0, *times], [*times, scenario.end], strict=True)]
    assert max(gaps) <= 40


def test_faults_scenario_has_every_fault() -> None:
    actions = [step.action for step in load_scenario("faults").timeline]
    for kind in (Trip, Estop, NeutralLost, BoardPlug, MeterOffline, PowerLoss, BusErrors):
        assert any(isinstance(a, kind) for a in actions), kind.__name__


def test_overload_scenario_trips_and_resets() -> None:
    actions = [step.action for step in load_scenario("overload").timeline]
    assert sum(isinstance(a, Trip) for a in actions) >= 2
    assert sum(isinstance(a, ResetBreaker) for a in actions) >= 2
    assert any(isinstance(a, Overload) and a.amps >= 24 for a in actions)


# ---------------------------------------------------------------------- clear errors


@pytest.mark.parametrize(
    ("snippet", "needles"),
    [
        (
            '[[load]]\nchannels = "A1"\npreset = "led_wash"\nampz = 4\n',
            ["[[load]] #1", "key 'ampz'", "did you mean 'amps'"],
        ),
        (
            '[[event]]\nat = "00:01:30"\nacton = "load"\n',
            ["[[event]] #1 (at 00:01:30)", "key 'action'", "missing"],
        ),
        (
            '[[event]]\nat = "00:01:30"\naction = "chaze"\nchannels = "B"\n',
            ["key 'action'", "did you mean 'chase'"],
        ),
        (
            '[[event]]\nat = 5\naction = "load"\nchannels = "A1"\npreset = "led_wsh"\n',
            ["key 'preset'", "did you mean 'led_wash'"],
        ),
        (
            '[[event]]\nat = 5\naction = "load"\nchannels = "E1"\nkind = "led"\namps = 2\n',
            ["key 'channels'", "groups A, B, C, D"],
        ),
        ('[[load]]\nchannels = "A13"\nkind = "led"\namps = 2\n', ["numbered 1..12"]),
        ('[[load]]\nchannels = "A1"\nkind = "lde"\namps = 2\n', ["did you mean 'led'"]),
        ('[[load]]\nchannels = "A1"\nkind = "led"\namps = -2\n', ["key 'amps'", ">= 0"]),
        ('[[load]]\nchannels = "A1"\nkind = "led"\n', ["key 'amps'", "missing"]),
        (
            '[[load]]\nchannels = "A1"\nkind = "led"\namps = 2\nangle = 40\n',
            ["key 'angle'", "only a dimmer"],
        ),
        (
            '[[event]]\nat = "1:75"\naction = "estop"\n',
            ["key 'at'", "below 60"],
        ),
        (
            '[[event]]\nat = 10\naction = "overload"\nchannel = "A1-A2"\namps = 20\nduration = 5\n',
            ["key 'channel'", "more than one"],
        ),
        (
            '[[event]]\nat = 10\naction = "overload"\nchannel = "A1"\namps = 20\n',
            ["'duration'", "trip_after"],
        ),
        (
            '[[event]]\nat = 10\naction = "unplug"\ngroup = "F"\n',
            ["key 'group'", "A, B, C, D"],
        ),
        ('[[aux]]\noutput = "X8"\nphase = "L1"\nkind = "smps"\namps = 3\n', ["3-phase"]),
        ('[[aux]]\noutput = "X12"\nkind = "smps"\namps = 3\n', ["X1..X9"]),
        ('[phases]\nA = "L1,L4"\n', ["[phases]", "key 'A'"]),
        ('[phases]\nE = "L1"\n', ["no group E"]),
        ("[evnt]\n", ["key 'evnt'", "did you mean 'event'"]),
        ('[[event]]\nat = 3\naction = "estop"\nrepeat = 3\n', ["key 'every'"]),
    ],
)
def test_mistakes_name_the_file_the_key_and_the_problem(snippet: str, needles: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        loads_scenario(HEAD + snippet, name="show.toml")
    message = str(info.value)
    assert message.startswith("show.toml: "), message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    ("head", "needles"),
    [
        ("[scenario]\nmodel = 50\n", ["[scenario]", "key 'model'", "36, 48 or 72"]),
        ("[scenario]\nmodle = 48\n", ["key 'modle'", "did you mean 'model'"]),
        ("[scenario]\nloop = true\n", ["key 'length'"]),
        ("[scenario]\nmains_hz = 55\n", ["key 'mains_hz'"]),
    ],
)
def test_scenario_table_mistakes(head: str, needles: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        loads_scenario(head, name="x.toml")
    for needle in needles:
        assert needle in str(info.value)


def test_event_after_the_loop_end_is_refused() -> None:
    text = """
[scenario]
loop = true
length = "00:01:00"
[[event]]
at = 50
action = "estop"
duration = 20
"""
    with pytest.raises(ScenarioError, match=r"\[\[event\]\] #1: ends at 00:01:10, after the loop"):
        loads_scenario(text)


def test_file_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(HEAD + '[[load]]\nchannels = "B2"\npreset = "dimmer"\nlevle = 50\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: [[load]] #1: key 'levle'")
    assert "did you mean 'level'" in str(info.value)
    broken = tmp_path / "broken.toml"
    broken.write_text("[scenario\n")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match=r"no such scenario .*rehearsal"):
        load_scenario("no-such-show")


# ---------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        ("00:01:30", 90.0),
        ("01:30", 90.0),
        ("1:02:03.5", 3723.5),
        ("45", 45.0),
    ],
)
def test_times(text: object, seconds: float) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["1:60", "-3", "abc", True, "1:2:3:4"])
def test_bad_times(text: object) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_channel_lists() -> None:
    a = ChannelId
    assert parse_channels("A1", "ABCD") == (a("A", 1),)
    assert parse_channels("B3-B5", "ABCD") == (a("B", 3), a("B", 4), a("B", 5))
    assert parse_channels("b5-3", "ABCD") == (a("B", 5), a("B", 4), a("B", 3))
    assert len(parse_channels("C", "ABCD")) == 12
    assert parse_channels(["A1", "D12"], "ABCD") == (a("A", 1), a("D", 12))
    assert parse_channels("A1, A3", "ABCD") == (a("A", 1), a("A", 3))
    for bad in ("A0", "A1-B2", "A1,A1", "G1", ""):
        with pytest.raises(ValueError):
            parse_channels(bad, "ABCD")


def test_phases_default_rotation_and_overrides() -> None:
    scenario = loads_scenario(HEAD + '[phases]\nB = "L3"\nC = "L2,L3,L1"\n')
    a = ChannelId
    assert [scenario.phases[a("A", n)] for n in (1, 2, 3, 4)] == ["L1", "L2", "L3", "L1"]
    assert {scenario.phases[a("B", n)] for n in range(1, 13)} == {"L3"}
    assert scenario.phases[a("C", 1)] == "L2" and scenario.phases[a("C", 12)] == "L1"


def test_presets_levels_and_own_presets() -> None:
    scenario = loads_scenario(
        HEAD
        + """
[presets.fog]
kind = "resistive"
amps = 6.5
[[load]]
channels = "A1"
preset = "fog"
[[load]]
channels = "A2"
preset = "led_wash"
level = 50
[[load]]
channels = "A3"
preset = "dimmer"
level = 100
[[load]]
channels = "A4"
preset = "dimmer"
level = 0
"""
    )
    loads = scenario.loads
    assert loads[ChannelId("A", 1)] == LoadSpec("resistive", 6.5)
    assert loads[ChannelId("A", 2)].amps == pytest.approx(PRESETS["led_wash"]["amps"] / 2)
    assert loads[ChannelId("A", 3)].angle == 0.0
    assert loads[ChannelId("A", 3)].rms() == pytest.approx(8.7, rel=0.01)
    assert loads[ChannelId("A", 4)].is_off and loads[ChannelId("A", 4)].rms() == 0.0
    assert loads[ChannelId("A", 5)].is_off


# ---------------------------------------------------------------------- time line expansion


def steps_of(text: str) -> list[tuple[float, object]]:
    return [(step.at, step.action) for step in loads_scenario(HEAD + text).timeline]


def test_chase_steps_channels_in_sequence() -> None:
    steps = steps_of(
        """
[[event]]
at = 10
action = "chase"
channels = "B1-B3"
preset = "dimmer"
step = 0.5
steps = 4
level = 100
base = 0
end_level = 50
"""
    )
    lit = [
        (t, [str(c) for c in a.channels])
        for t, a in steps
        if isinstance(a, SetLoad) and not a.load.is_off and a.load.angle == 0.0
    ]
    assert lit == [(10.0, ["B1"]), (10.5, ["B2"]), (11.0, ["B3"]), (11.5, ["B1"])]
    final = steps[-1]
    assert final[0] == 12.0 and isinstance(final[1], SetLoad)
    assert final[1].load.angle == pytest.approx(90.0)


def test_bounce_chase_and_width() -> None:
    steps = steps_of(
        """
[[event]]
at = 0
action = "chase"
channels = "A1-A4"
preset = "led_wash"
step = 1
steps = 6
bounce = true
base = 0
"""
    )
    heads = [str(a.channels[0]) for _, a in steps if isinstance(a, SetLoad) and not a.load.is_off]
    assert heads[:6] == ["A1", "A2", "A3", "A4", "A3", "A2"]


def test_overload_trip_reset_and_hoist() -> None:
    steps = steps_of(
        """
[[event]]
at = "00:01:00"
action = "overload"
channel = "A5"
amps = 25
trip_after = 14
reset_after = 50
[[event]]
at = 30
action = "hoist"
channel = "D1"
duration = 12
"""
    )
    a5 = ChannelId("A", 5)
    assert (60.0, Overload(a5, 25.0)) in steps
    assert (74.0, Trip(a5)) in steps
    assert (110.0, ResetBreaker(a5)) in steps
    hoist = [
        (t, a) for t, a in steps if isinstance(a, SetLoad) and a.channels == (ChannelId("D", 1),)
    ]
    assert [t for t, _ in hoist] == [30.0, 42.0]
    assert hoist[0][1].load.kind == "motor" and hoist[0][1].load.inrush == 6.0
    assert hoist[1][1].load.is_off


def test_faults_with_durations_and_repeat() -> None:
    steps = steps_of(
        """
[[event]]
at = 5
action = "estop"
duration = 10
[[event]]
at = 40
action = "unplug"
group = "c"
duration = 3
repeat = 3
every = 20
[[event]]
at = 1
action = "aux"
output = "X2"
kind = "resistive"
amps = 4
"""
    )
    assert (5.0, Estop(True)) in steps and (15.0, Estop(False)) in steps
    unplugs = [t for t, a in steps if a == BoardPlug("C", False)]
    assert unplugs == [40.0, 60.0, 80.0]
    assert (1.0, SetAux("X2", LoadSpec("resistive", 4.0))) in steps
    assert [t for t, _ in steps] == sorted(t for t, _ in steps)


# ---------------------------------------------------------------------- clock


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_clock_runs_faster_than_real_time() -> None:
    fake = FakeTime()
    clock = ScenarioClock(10.0, clock=fake)
    clock.start(0.0)
    fake.t += 3.0
    assert clock.now() == pytest.approx(30.0)
    assert clock.real_seconds(60.0) == pytest.approx(6.0)
    clock.speed = 1.0  # keeps the scenario time, changes the rate
    fake.t += 2.0
    assert clock.now() == pytest.approx(32.0)
    with pytest.raises(ValueError):
        ScenarioClock(0.0)


async def test_clock_sleeps_in_compressed_real_time() -> None:
    clock = ScenarioClock(20.0)
    clock.start(0.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await clock.sleep_until(4.0)  # 4 scenario seconds = 0.2 s
    elapsed = loop.time() - t0
    assert 0.18 <= elapsed < 0.5
    assert clock.now() >= 4.0


# ---------------------------------------------------------------------- load shapes


def test_load_kinds_match_the_firmware_waveforms() -> None:
    """The meter gets each kind's PF and harmonics from CPython copies of the firmware's
    waveform formulas: compare them with the tables the firmware itself builds."""
    script = """
import json
from firmware.loadsim import LoadSim, KINDS
sim = LoadSim()
cases = [("resistive", {}), ("led", {}), ("motor", {}), ("smps", {}), ("audio", {}),
         ("dimmer", {"angle": 30}), ("dimmer", {"angle": 90}), ("dimmer", {"angle": 140})]
out = {"kinds": list(KINDS), "tables": []}
for i, (kind, options) in enumerate(cases):
    sim.set_load(i, KINDS.index(kind), 5000, **options)
    base = i * 1025
    out["tables"].append([sim._tables[base + j] - 32768 for j in range(1024)])
print(json.dumps(out))
"""
    result = json.loads(run_micropython(script).strip().splitlines()[-1])
    assert tuple(result["kinds"]) == KINDS
    cases = [
        kind_shape("resistive"),
        kind_shape("led"),
        kind_shape("motor"),
        kind_shape("smps"),
        kind_shape("audio"),
        kind_shape("dimmer", 30.0),
        kind_shape("dimmer", 90.0),
        kind_shape("dimmer", 140.0),
    ]
    for table, shape in zip(result["tables"], cases, strict=True):
        spectrum = spectrum_of([float(v) for v in table])
        fundamental = spectrum[1]
        pf = math.cos(math.atan2(fundamental.imag, fundamental.real))
        assert pf == pytest.approx(shape.pf, abs=0.003)
        assert (fundamental.imag > 0) == shape.leading or shape.pf > 0.9999
        assert abs(spectrum[3]) / abs(fundamental) == pytest.approx(shape.h3, abs=0.003)
        peak = max(abs(v) for v in table)
        rms = math.sqrt(sum(v * v for v in table) / len(table))
        assert peak / rms == pytest.approx(shape.crest, rel=0.01)


def test_shapes_are_what_a_stage_electrician_expects() -> None:
    led = kind_shape("led")
    assert led.crest >= 3.0 and led.h3 > 0.8 and led.leading and 0.9 <= led.pf <= 1.0
    motor = kind_shape("motor")
    assert not motor.leading and motor.pf == pytest.approx(math.cos(math.radians(37)), abs=0.01)
    assert kind_shape("smps").pf > 0.99
    # A dimmer at half conducts later: the fundamental lags and the 3rd harmonic grows.
    half, full = kind_shape("dimmer", 90.0), kind_shape("dimmer", 0.0)
    assert full.rms_fraction == pytest.approx(1.0, abs=0.005)
    assert half.rms_fraction == pytest.approx(math.sqrt(0.5), abs=0.03)
    assert half.h3 > 0.4 and not half.leading and half.pf < 0.9
    audio = LoadSpec("audio", 12.0)
    assert audio.rms() == pytest.approx(12.0 * AUDIO_RMS_FRACTION)
    meter = LoadSpec("led", 5.0).meter_load()
    assert meter is not None and meter.current == 5.0 and meter.h3 == pytest.approx(led.h3)


def test_the_documented_example_is_a_valid_scenario() -> None:
    import tools.virtual.scenario as module

    doc = module.__doc__ or ""
    example = doc[doc.index("    [scenario]") : doc.index("Load keys")]
    scenario = loads_scenario("\n".join(line[4:] for line in example.splitlines()), "doc")
    assert scenario.model == 48 and scenario.loop and scenario.length == 240.0
    assert scenario.aux["X8"].phases == ("L1", "L2", "L3")
