"""Synthetic waveforms (firmware/loadsim.py) on the MicroPython unix port."""

from __future__ import annotations

import json
import math

import pytest

from tests.mpy import run_micropython

HARNESS = """
import json, math
from array import array
from firmware import rms, loadsim
from firmware.loadsim import OFF, RESISTIVE, LED, DIMMER, MOTOR, SMPS, AUDIO
BLOCK = 64

def capture(sim, blocks):
    # Channel-major lists of every sample of `blocks` fills
    buf = array('H', bytearray(2 * rms.STRIDE * BLOCK))
    chans = [array('H') for _ in range(rms.STRIDE)]
    for _ in range(blocks):
        sim.fill(buf, 0, BLOCK)
        for k in range(BLOCK):
            for ch in range(rms.STRIDE):
                chans[ch].append(buf[k * rms.STRIDE + ch])
    return chans

def rms_of(xs):
    m = sum(xs) / len(xs)
    return (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5
"""
UA_PER_COUNT = 74600


def mpy(body: str) -> dict:
    return json.loads(run_micropython(HARNESS + body).strip().splitlines()[-1])


def test_layout_offset_noise_and_voltage_reference() -> None:
    result = mpy(
        """
sim = loadsim.LoadSim(seed=3, offset_drift=0)
sim.set_load(0, RESISTIVE, 10000)
ch = capture(sim, 100)
idle = ch[5]
mean = sum(idle) / len(idle)
var = sum((x - mean) ** 2 for x in idle) / len(idle)
ref = ch[rms.VREF]
print(json.dumps(dict(lo=min(min(c) for c in ch), hi=max(max(c) for c in ch),
    idle=sorted(set(idle)), mean=mean, var=var, ref_lo=min(ref), ref_hi=max(ref),
    load=rms_of(ch[0]))))
"""
    )
    assert result["lo"] >= 0 and result["hi"] <= 4095
    assert result["idle"] == [2047, 2048, 2049]  # +-1 LSB around mid-rail
    assert result["mean"] == pytest.approx(2048, abs=0.02)
    assert result["var"] == pytest.approx(0.25, abs=0.02)  # triangular noise: 1/6 + 1/12 (Q)
    assert result["ref_lo"] == pytest.approx(2048 - 1500, abs=2)
    assert result["ref_hi"] == pytest.approx(2048 + 1500, abs=2)
    assert result["load"] * UA_PER_COUNT / 1000 == pytest.approx(10000, rel=0.003)


def test_every_kind_draws_its_current_and_has_its_shape() -> None:
    result = mpy(
        """
sim = loadsim.LoadSim(seed=5, offset_drift=0)
kinds = [(RESISTIVE, {}), (LED, {}), (DIMMER, dict(angle=45)), (DIMMER, dict(angle=90)),
         (DIMMER, dict(angle=135)), (MOTOR, dict(inrush=1)), (SMPS, {}), (AUDIO, {})]
for ch, (kind, opt) in enumerate(kinds):
    sim.set_load(ch, kind, 5000, **opt)
ch = capture(sim, 250)
out = []
for c in range(len(kinds)):
    xs = ch[c]
    r = rms_of(xs) * 74.6
    peak = max(abs(x - 2048) for x in xs) * 74.6
    out.append((r, peak / r))
print(json.dumps(out))
"""
    )
    rms_ma = [r for r, _ in result]
    crest = [c for _, c in result]
    assert rms_ma[:7] == pytest.approx([5000] * 7, rel=0.01)
    assert 2000 < rms_ma[7] < 5000  # audio: the programme comes and goes
    assert crest[0] == pytest.approx(2**0.5, rel=0.02)
    assert crest[1] >= 3.0  # LED driver
    assert crest[2] == pytest.approx(1.48, rel=0.03)
    assert crest[3] == pytest.approx(2.0, rel=0.03)
    assert crest[4] > 3.0
    assert 1.3 < crest[5] < 1.6 and 1.3 < crest[6] < 1.6


def test_dimmer_conducts_from_its_firing_angle() -> None:
    result = mpy(
        """
sim = loadsim.LoadSim(seed=2, offset_drift=0, mains_mhz=50000)
sim.set_load(0, DIMMER, 5000, angle=90)
ch = capture(sim, 60)
ref = ch[rms.VREF]
# fraction of each half cycle (by the reference's sign) with current
on = [0, 0]
total = [0, 0]
for k in range(len(ref)):
    half = 0 if ref[k] >= 2048 else 1
    total[half] += 1
    on[half] += abs(ch[0][k] - 2048) > 3
print(json.dumps([on[0] / total[0], on[1] / total[1]]))
"""
    )
    assert result == pytest.approx([0.5, 0.5], abs=0.04)  # 90 degrees: half of every half


def test_motor_inrush_decays_to_the_running_current() -> None:
    result = mpy(
        """
sim = loadsim.LoadSim(seed=4, offset_drift=0)
sim.set_load(0, MOTOR, 4000, inrush=6, inrush_ms=300)
buf = array('H', bytearray(2 * rms.STRIDE * BLOCK))
per_block = []
for _ in range(40):
    sim.fill(buf, 0, BLOCK)
    xs = [buf[k * rms.STRIDE] for k in range(BLOCK)]
    per_block.append(sum((x - 2048) ** 2 for x in xs) / BLOCK)
print(json.dumps([(v ** 0.5) * 74.6 for v in per_block]))
"""
    )
    # 6 times the running current decaying to 5 % of the excess in 300 ms (tau 100 ms);
    # each fill takes the value at its middle, 10 ms in for the first
    assert result[0] == pytest.approx(4000 * (1 + 5 * math.exp(-10 / 100)), rel=0.02)
    assert result[:15] == sorted(result[:15], reverse=True)
    assert result[-1] == pytest.approx(4000, rel=0.02)


@pytest.mark.parametrize("mhz", [49500, 50000, 60500])
def test_mains_frequency_gives_a_fractional_cycle_length(mhz: int) -> None:
    result = mpy(
        f"""
sim = loadsim.LoadSim(seed=1, mains_mhz={mhz})
ref = capture(sim, 200)[rms.VREF]
ups = [k for k in range(1, len(ref)) if ref[k - 1] < 2048 <= ref[k]]
print(json.dumps((ups[-1] - ups[0]) / (len(ups) - 1)))
"""
    )
    assert result == pytest.approx(1e9 / 312 / mhz, rel=2e-4)


def test_load_changes_at_run_time_and_off_collapses_at_once() -> None:
    result = mpy(
        """
sim = loadsim.LoadSim(seed=8, offset_drift=0)
sim.set_load(0, RESISTIVE, 20000)
a = rms_of(capture(sim, 20)[0]) * 74.6
sim.set_load(0, RESISTIVE, 30000)
b = rms_of(capture(sim, 20)[0]) * 74.6
sim.set_load(0, OFF)
c = capture(sim, 1)[0]
print(json.dumps(dict(a=a, b=b, off=sorted(set(c)))))
"""
    )
    assert result["a"] == pytest.approx(20000, rel=0.01)
    assert result["b"] == pytest.approx(30000, rel=0.01)
    assert set(result["off"]) <= {2047, 2048, 2049}


def test_beyond_full_scale_clips() -> None:
    result = mpy(
        """
sim = loadsim.LoadSim(seed=8, offset_drift=0)
sim.set_load(0, RESISTIVE, 150000)
xs = capture(sim, 10)[0]
print(json.dumps([min(xs), max(xs), sum(x == 0 for x in xs), sum(x == 4095 for x in xs)]))
"""
    )
    lo, hi, zeros, tops = result
    assert (lo, hi) == (0, 4095) and zeros > 20 and tops > 20


def test_exact_sum_of_squares_matches_the_samples() -> None:
    result = mpy(
        """
sim = loadsim.LoadSim(seed=6, offset_drift=0, mains_mhz=50500)
kinds = [(RESISTIVE, {}), (LED, {}), (DIMMER, dict(angle=135, rise_us=300)), (MOTOR, {})]
for ch, (kind, opt) in enumerate(kinds):
    sim.set_load(ch, kind, 8000, **opt)
buf = array('H', bytearray(2 * rms.STRIDE * BLOCK))
exact = [0.0] * 4
sampled = [0.0] * 4
n = 0
for _ in range(500):
    sim.fill(buf, 0, BLOCK)
    for ch in range(4):
        exact[ch] += sim.exact_sum_sq(ch, 0, BLOCK)
        sampled[ch] += sum((buf[k * rms.STRIDE + ch] - 2048) ** 2 for k in range(BLOCK))
    n += BLOCK
# the samples also carry the noise and quantisation: 1/4 LSB^2 each
print(json.dumps([((s - 0.25 * n) / e) ** 0.5 for s, e in zip(sampled, exact)]))
"""
    )
    assert result == pytest.approx([1, 1, 1, 1], abs=0.001)


def test_small_tables_and_no_allocation_per_block() -> None:
    # The sim board takes 256-point tables; steady loads cost no heap per block.
    result = mpy(
        """
import gc


def made_by(sim, buf):  # locals only: a new global would grow the module's dict
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    k = 0
    while k < 50:  # (a range() would allocate its iterator)
        sim.fill(buf, 0, BLOCK)
        k += 1
    made = gc.mem_alloc() - before
    gc.enable()
    return made


out = {}
for bits in (10, 8):
    gc.collect()
    before = gc.mem_alloc()
    sim = loadsim.LoadSim(seed=4, table_bits=bits)
    for ch in range(12):
        sim.set_load(ch, (RESISTIVE, LED, DIMMER, SMPS)[ch % 4], 2000 + 1000 * ch)
    gc.collect()
    size = gc.mem_alloc() - before
    buf = array('H', bytearray(2 * rms.STRIDE * BLOCK))
    sim.fill(buf, 0, BLOCK)
    made = made_by(sim, buf)
    levels = [rms_of(capture(sim, 30)[ch]) * 74.6 for ch in range(12)]
    out[bits] = dict(size=size, made=made, levels=levels)
    del sim
print(json.dumps(out))
"""
    )
    for bits, tables in (("10", 13 * 1025 * 2), ("8", 13 * 257 * 2)):
        got = result[bits]
        assert got["made"] == 0, got
        assert tables < got["size"] < tables + 4096
        for ch, ma in enumerate(got["levels"]):
            assert ma == pytest.approx(2000 + 1000 * ch, rel=0.01), (bits, ch)


def test_gaussian_noise_and_flicker_cost_no_heap_for_steady_loads() -> None:
    result = mpy(
        """
import gc


def made_by(sim, buf):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    k = 0
    while k < 50:
        sim.fill(buf, 0, BLOCK)
        k += 1
    made = gc.mem_alloc() - before
    gc.enable()
    return made


sim = loadsim.LoadSim(seed=4, table_bits=8, noise_lsb=1.0)
for ch in range(12):
    sim.set_load(ch, (RESISTIVE, LED, DIMMER, SMPS)[ch % 4], 2000 + 1000 * ch)
buf = array('H', bytearray(2 * rms.STRIDE * BLOCK))
sim.fill(buf, 0, BLOCK)
made = made_by(sim, buf)
flick = loadsim.LoadSim(seed=4, offset_drift=0)
flick.set_load(0, RESISTIVE, 5000, flicker_hz=8, depth=0.3)
per_block = []
for _ in range(50):
    flick.fill(buf, 0, BLOCK)
    per_block.append(sum((buf[k * rms.STRIDE] - 2048) ** 2 for k in range(BLOCK)) / BLOCK)
levels = [(v ** 0.5) * 74.6 for v in per_block]
print(json.dumps(dict(made=made, lo=min(levels), hi=max(levels))))
"""
    )
    assert result["made"] == 0
    # 30 % modulation, one value per 20 ms block: 8 Hz is sampled at 6 points a period
    assert result["lo"] == pytest.approx(5000 * 0.7, rel=0.05)
    assert result["hi"] == pytest.approx(5000 * 1.3, rel=0.05)
