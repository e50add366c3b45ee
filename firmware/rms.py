"""RMS engine of a group board: true RMS of 12 CT channels over whole mains cycles.

Sample buffer
-------------
``feed()`` reads an ``array('H')`` of 12-bit ADC codes, channel-interleaved, ``STRIDE`` (13)
values per sample instant::

    buf[k * 13 + c]    c = 0..11: CT of output c + 1      c = 12 (VREF): AC voltage reference

One sample instant every ``SAMPLE_US`` (312 us, 3205.1 Hz: 64.1 samples per 50 Hz cycle,
53.4 per 60 Hz cycle). The rate is deliberately not a multiple of 50 or 60 Hz: the sample
grid then slides along the mains waveform, so the RMS of waveforms with steep edges (phase-cut
dimmers, capacitor-input rectifiers) does not depend on where the edges fall between samples.

Scaling
-------
CT 2500:1 into a 27 ohm burden, biased at mid-rail of a 3.3 V 12-bit ADC: one count is
0.8057 mV / 27 ohm * 2500 = 74.6 mA of primary current (``UA_PER_COUNT``). Full scale is
+-2048 counts = +-152.8 A peak, 108 A RMS of a sine: a 16 A output is measured up to more
than 100 A RMS; beyond that the samples clip at 0 or 4095 and the channel is flagged.
Per-channel calibration is an integer gain in ppm (``set_gain``).

Cycles and windows
------------------
A mains cycle ends at the first sample at or after a rising zero crossing of the voltage
reference. The detector is armed only after the reference has gone below its mid level by
the hysteresis (1/16 of its peak-to-peak, at least 16 counts), so noise around the crossing
cannot end a cycle twice; crossings closer than ``MIN_CYCLE`` samples are ignored. The zero
level is the mean of the reference over the previous cycle. The crossing is interpolated
between two samples for the frequency measurement. Without a reference (under 256 counts
peak-to-peak over a cycle) cycles are timed from the mains frequency the aggregator
broadcasts (``set_mains``), fractions of a sample carried over; a cycle that reaches
``MAX_CYCLE`` samples without a crossing ends there. ``ref_ok`` tells which happened.

Per cycle and channel the kernel keeps sum(x), sum((x - 2048)^2), max and min; a ring holds
the last ``MAX_WINDOW`` cycles. After every cycle the window of the last 10 cycles (12 when
the mains frequency is 55 Hz or more) is evaluated, so a load change shows within a cycle
or two, fully after one window (200 ms). Every 10/12 cycles a completed window also enters
the 3 s aggregate (150/180 cycles, the quadratic mean of 15 windows, as IEC 61000-4-30
aggregates its 10/12-cycle values): that is the steady reading for display and reports.

Per window, and per cycle for the classifier: the exact variance n * sum(d^2) - sum(d)^2
(the offset is removed without a filter that would need to settle), less n^2 times the
channel's noise variance (ADC noise and quantisation); when what is left is under the gate
margin, the larger of the noise floor (``floor_ma``, default 40 mA) and 6 sigma of the
noise's own variance estimate (noise * 6 * sqrt(2 / n)), the channel reads exactly 0. Peak
is the largest distance of a sample from the window mean, crest factor = peak / RMS.

Noise without a commissioning step
----------------------------------
The noise is estimated continuously from the channels' idle windows. The spare inputs of
ADC B (CH5..CH7, tied to mid-rail) would see the ADC's noise only, not a CT input's (burden,
bias network, wiring pick-up), and the PIO program converts 13 channels per instant: they
can only be read with the stream stopped, i.e. with a gap in the measurement. An idle CT
channel measures exactly what has to be subtracted, on that very input. Idle is decided by
what noise is not: mains-synchronous. Per cycle and channel a kernel correlates the samples
with a 64-point sine and cosine whose phase starts at the cycle start (I and Q, the DC part
removed exactly with the table's own sums); a completed window is idle when
sum over its cycles of (I^2 + Q^2) is under 3 times what noise of the window's own variance
gives (chi^2 with 20 degrees of freedom: an idle window fails once in ~10^5). A load has a
fundamental: a 0.16 A LED driver's is ~ 300 times that threshold, and even a pure sine of
~25 mA (or an LED driver of ~45 mA) fails the test, so no load in the specified range can be
learnt as noise, however long it runs. A window that passes (and whose variance is under
16 LSB^2) updates the channel's own estimate: the mean of its first 16 idle windows, then an
exponential average over 16 (3.2 s). The noise subtracted on a channel is its own estimate
shrunk towards the weighted mean of all channels' (weights = idle windows, up to 16), so a
channel that has never been idle (loaded since start-up) uses the others': same chips, same
circuit. While no channel has been idle at all, the prior (``noise_q8``, default 1/4 LSB^2:
+-1 LSB triangular noise with the quantisation) is used: a board whose 12 outputs are all
loaded from power-up on, without a single idle window, stays uncorrected (the bench's
``accuracy.max_error_pct_1_5_gauss_never_idle``). Before its first completed window, a
channel takes the sliding window of the first cycles. ``set_noise``/``calibrate_noise``
still set an estimate (as 16 idle windows); ``track_noise=False`` keeps it fixed.

Reported value
--------------
``report_ua`` is the reading to display and report: the 3 s aggregate while the load is
steady, the 200 ms window after a load step until the aggregate has caught up (within 1/32
of the window, or 13 completed windows after the step), 0 when the window reads 0. A step is
the window leaving the band of window values seen since the previous step by more than
1/32 of the aggregate: per cycle the extremes of the sliding window values are kept per
aggregation slot, and the band spans the last (up to 15) completed slots from the second
after the step on (the first ones still mix in the old level). A steady flickering load (an
LED wall at 8 Hz moves the 200 ms window by +-5 %) stays inside its own band, so the
reading does not jump between aggregate and window; a steady load's band is its noise
(+-0.2 % at 0.8 A), so a step shows as fast as with a fixed 3 % threshold. Until a band
exists (start-up, just after a step) the window is compared with the aggregate (3 %).

32-bit proof
------------
On the RP2040 a viper ``int`` has 32 bits and a Python small int 31 bits, so nothing on the
per-cycle path may reach 2^31 inside viper code or 2^30 where Python sees it. With
d = x - 2048 in [-2048, 2047], at most ``MAX_CYCLE`` = 80 samples per cycle and
``MAX_WINDOW`` * 80 = 960 per window:

==============================  ======================  =====================================
quantity                        bound                   held as
==============================  ======================  =====================================
cycle sum(x)                    80 * 4095 < 2^19        one word
cycle sum(d^2)                  80 * 2^22 < 2^28.4      one word
window sum(x), abs(sum(d))      < 2^22, < 2^21          one word
window sum(d^2)                 960 * 2^22 < 2^32       two limbs of 14 bits (hi < 2^18)
n * sum(d^2), sum(d)^2, V       < 2^42                  two limbs (hi < 2^28)
isqrt(V), its remainder * 4     < 2^21, < 2^24          one word, digit by digit
window RMS in counts * 2^9      < 2^20 (root * 2^9 < 2^30)
3 s sum of 15 (RMS * 2^9)^2     < 2^44                  two limbs (hi < 2^30)
peak * 3200 (crest factor)      < 2^28                  one word
cycle I, Q: sum(d * table)      80 * 2^11 * 64 < 2^24   one word (stored + 2^29)
DC term abs(sum(d)) * sum(tab)  2^17.4 * 2^12.4 < 2^30  one word
cycle I^2 + Q^2                 < 2^27 (saturated)      one word; window sum < 2^31
idle test 48 * var * n          48 * 2^12 * 960 < 2^28  one word
noise estimates * weights       12 * 2^16 * 16 < 2^24   one word
outputs in uA                   < 2^29                  Python-visible
==============================  ======================  =====================================

Products are formed only between limbs small enough for their product to stay below 2^31.
``probe`` records the largest value of every such intermediate (shifted right by 15, so a
value below 2^31 shows as below 2^16); ``tests/firmware/test_rms.py`` drives full-scale
worst-case input through the engine and checks the probe and every array against those
limits. Nothing on the path uses floats or allocates. Words the kernels store and load
again are kept >= 0 (signed sums biased): a viper load of an ``array('i')`` word is
sign-extended on the RP2040 but zero-extended on the 64-bit unix port the tests run on.

Use
---
::

    engine = RmsEngine()
    pos = 0
    while pos < count:                          # count sample instants in buf
        pos = engine.feed(buf, pos, count)
        if engine.cycle_done:                   # a mains cycle ended: outputs are fresh
            classifier.update(engine.period_us, engine.cycle_ua)
"""

import math
from array import array

import micropython
from micropython import const

NCT = const(12)  # CT channels
STRIDE = const(13)  # values per sample instant: 12 CTs, then the voltage reference
VREF = const(12)  # index of the voltage reference within an instant
SAMPLE_US = const(312)  # sample period
UA_PER_COUNT = const(74600)  # nominal primary current per ADC count
MIN_CYCLE = const(40)  # samples; shorter cycles (> 80 Hz) are noise
MAX_CYCLE = const(80)  # samples (40 Hz); the 32-bit bounds rely on it
MAX_WINDOW = const(12)  # cycles in the longest window
AGG_WINDOWS = const(15)  # windows in the 3 s aggregate
ADC_MAX = const(4095)

_MID = const(2048)
_LB = const(14)  # limb width of two-limb numbers: value = hi << 14 | lo
_LM = const(0x3FFF)
_MAX_GAIN = const(1 << 17)  # uA per count; keeps limb products below 2^31
_MAX_NOISE = const(1 << 12)  # Q8 counts^2 (16 counts^2): noise + floor < 2^13
_OFF_SPAN = const(2048)  # offset clamp, Q4 counts (+-128 counts around mid-rail)
_NOISE_Q8 = const(64)  # 1/4 LSB^2: quantisation (1/12) + +-1 LSB triangular noise (1/6)
_NW = const(16)  # idle windows a channel's own noise estimate averages (then EMA 1/16)
_IDLE_K = const(48)  # idle: fundamental power < 3 x its expectation from noise (16 * 3)
_IQ_MAX = const(8192)  # |I|, |Q| of a cycle from here on: certainly not idle
_P_SAT = const(1 << 27)  # cycle fundamental power, saturated
_TAB_A = const(64)  # amplitude of the sine table
# Signed sums are stored biased: a viper load of an array('i') word is zero-extended on a
# 64-bit port (the tests') and sign-extended on the RP2040, so stored words stay >= 0
_BIAS = const(1 << 29)
_BAND0 = const(4)  # _R_BAND is stored + 4
_GATE_K2 = const(4718592)  # (6 sigma)^2 * 2 * 256^2: the gate's margin, Q8, times n
# 256e9 / SAMPLE_US: mHz * (cycle length in 1/256 samples)
_F_NUM = const(820512820)
_SPLIT_MHZ = const(55000)  # 10-cycle windows below, 12-cycle windows above
_REF_SWING = const(256)  # counts peak-to-peak: less means no voltage reference

# Scan state (array 'i')
_S_ARMED = const(0)
_S_MID = const(1)  # zero level of the reference, counts
_S_HYST = const(2)
_S_COUNT = const(3)  # samples in the current cycle so far
_S_LIMIT = const(4)  # cycle ends by force at this many samples
_S_PREV = const(5)  # reference sample before the crossing
_S_HIT = const(6)  # 0: no boundary, 1: crossing, 2: forced
_S_V = const(7)  # reference sample at the crossing
_NSCAN = const(8)

_HIT_CROSSING = const(1)
_HIT_FORCED = const(2)

# Per-channel accumulators of the current cycle (acc) and of each ring slot
_A_S1 = const(0)
_A_S2 = const(1)
_A_MAX = const(2)
_A_MIN = const(3)
_NACC = const(4)

# Control words handed to the window kernel
_C_HEAD = const(0)  # ring slot of the cycle just closed
_C_NCYC = const(1)  # cycles in the window
_C_N = const(2)  # samples in the window
_C_NC = const(3)  # samples in the cycle just closed
_C_PUSH = const(4)  # 1: a window completed, add it to the aggregate
_C_AHEAD = const(5)  # aggregate slot to fill
_C_ACOUNT = const(6)  # aggregate slots in use
_C_WGATE = const(7)  # gate margin per unit of noise for the window, Q8 (6 sigma)
_C_CGATE = const(8)  # the same for the cycle
_C_TRACK = const(9)  # 1: estimate the noise from idle windows
_C_PRIOR = const(10)  # noise assumed while no channel has been idle, Q12 counts^2
_NCTL = const(11)

# Fundamental (I/Q against a sine table, phase 0 at the cycle start): state words
_F_INC = const(0)  # phase step per sample, 1/65536 cycle
_F_J0 = const(1)  # index within the cycle of the first instant handed to the kernel
_F_SS = const(2)  # sum of the sine table over the cycle's instants so far
_F_SC = const(3)  # the same for the cosine
_NF = const(4)

# Noise state per channel
_N_EST = const(0)  # own estimate from idle windows, Q12 counts^2
_N_W = const(1)  # idle windows in it (0.._NW)
_NNS = const(2)

# Reported-value state per channel (Q9 counts)
_R_AGG = const(0)  # 3 s aggregate
_R_LO = const(1)  # band of the window values since the last step (< 3 s)
_R_HI = const(2)
_R_CLO = const(3)  # extremes of the window values since the last completed window
_R_CHI = const(4)
_R_STEP = const(5)  # 1: a load step, the window is reported
_R_BAND = const(6)  # completed windows in the band (< 1: none yet)
_R_W = const(7)  # the window value of the cycle just closed
_NRS = const(8)
_EMPTY = const(0x3FFFFFFF)

# Calibration words per channel
_K_GAIN = const(0)
_K_NOISE = const(1)
_K_FLOOR = const(2)
_NCAL = const(3)

# Output blocks of NCT words each
_O_RMS = const(0)
_O_AVG = const(12)
_O_CYCLE = const(24)
_O_PEAK = const(36)
_O_CREST = const(48)
_O_CLIP = const(60)
_O_OFFSET = const(72)
_O_VAR = const(84)
_O_REPORT = const(96)
_NOUT = const(108)

# Probe slots: running maximum of (intermediate >> 15)
_P_S1 = const(0)  # window sum(x)
_P_S2_HI = const(1)  # window sum(d^2), high limb before carry
_P_S2_LO = const(2)  # window sum(d^2), low limb before carry
_P_NS2 = const(3)  # n * high limb
_P_NS2_LO = const(4)  # n * low limb
_P_SD_SQ = const(5)  # square of the low limb of abs(sum(d))
_P_SD_SQ_HI = const(6)  # high limb of sum(d)^2
_P_V_HI = const(7)  # high limb of the variance numerator V
_P_NOISE = const(8)  # n * (noise + floor), and its product with n
_P_ROOT9 = const(9)  # isqrt(V) << 9
_P_AGG_HI = const(10)  # high limb of the aggregate sum
_P_ISQRT = const(11)  # isqrt remainder << 2
_P_UA = const(12)  # largest uA product
_P_CREST = const(13)  # peak * 3200
_P_IQ = const(14)  # abs(I), abs(Q) of a cycle before the DC correction
_P_DC = const(15)  # DC correction product abs(sum(d)) * abs(sum(sin))
_NPROBE = const(16)
_W_VH = const(16)  # scratch after the probe slots: V of the last _rms_q9
_W_VL = const(17)
_NWORK = const(18)


class ConfigError(ValueError):
    """A setting of the engine is out of range."""


def _zeros(n):
    return array("i", bytearray(4 * n))  # MicroPython takes a bytearray as raw contents


def _sine_table():
    # 64 points of a sine of amplitude _TAB_A, biased by _TAB_A (bytes)
    t = bytearray(64)
    for i in range(64):
        t[i] = _TAB_A + round(_TAB_A * math.sin(2 * math.pi * i / 64))
    return t


def _isqrt_int(v):
    # floor(sqrt(v)) of a small non-negative int, integers only
    if v < 2:
        return v
    x = v
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + v // x) >> 1
    return x


class RmsEngine:
    """RMS, peak, crest factor and clipping of ``NCT`` CT channels, cycle by cycle.

    Outputs (memoryviews of ``NCT`` ints, rewritten after every mains cycle):

    - ``rms_ua``: RMS over the sliding 10/12-cycle window, uA (0 under the noise floor)
    - ``avg_ua``: 3 s aggregate (quadratic mean of the last 15 windows), uA; the reading to
      display and report
    - ``cycle_ua``: RMS over the cycle just closed, uA; for the overload classifier (a
      trip shows in the very next cycle)
    - ``peak_ua``: largest instantaneous current in the window, uA
    - ``crest_x100``: peak / RMS * 100 (0 when the RMS is 0)
    - ``clipped``: 1 when a sample of the window was 0 or 4095 (current beyond full scale)
    - ``offset_q4``: DC level of the channel, counts * 16 (32768 = mid-rail)
    - ``var_q8``: window variance before noise subtraction, counts^2 * 256 (saturates)
    - ``report_ua``: the reading to display and report: ``avg_ua`` while the load is
      steady, ``rms_ua`` from a load step until the aggregate has caught up, 0 when the
      window reads 0 (see "Reported value")

    Scalars: ``cycle_done`` (the last ``feed`` ended a cycle), ``window_done`` (that cycle
    also completed a window: ``avg_ua`` changed), ``period_us`` (of that cycle),
    ``freq_mhz`` (measured over the window, or the broadcast value when the reference is
    absent), ``ref_ok``, ``window_cycles``, ``window_samples``, ``cycles`` (closed so far,
    wraps at 2^30).
    """

    def __init__(self, mains_mhz=50000, floor_ma=40, cycles=0, track_noise=True, noise_q8=None):
        """``cycles``: fixed window length in cycles (1..12); 0 follows the frequency.

        ``track_noise``: estimate every channel's noise from its idle windows (else the
        noise stays what ``set_noise``/``calibrate_noise`` set); ``noise_q8``: the noise
        assumed until a channel has been idle (default 1/4 LSB^2), counts^2 * 256.
        """
        if not 0 <= cycles <= MAX_WINDOW:
            raise ConfigError("cycles")
        prior = _NOISE_Q8 if noise_q8 is None else noise_q8
        if not 0 <= prior < _MAX_NOISE:
            raise ConfigError("noise")
        self._fixed_cycles = cycles
        self._scan = _zeros(_NSCAN)
        self._acc = _zeros(STRIDE * _NACC)
        self._ring = _zeros(MAX_WINDOW * NCT * _NACC)
        self._len = _zeros(MAX_WINDOW)  # samples per cycle, by ring slot
        self._len_q8 = _zeros(MAX_WINDOW)  # cycle length in 1/256 samples
        self._ctl = _zeros(_NCTL)
        self._cal = _zeros(NCT * _NCAL)
        self._agg = _zeros(AGG_WINDOWS * NCT * 2)
        self._out = _zeros(_NOUT)
        self._work = _zeros(_NWORK)
        self._iq = _zeros(NCT * 2)  # fundamental of the current cycle: I, Q per channel
        self._fund = _zeros(_NF)
        self._pring = _zeros(MAX_WINDOW * NCT)  # fundamental power per cycle, by ring slot
        self._sine = _sine_table()
        self._nst = _zeros(NCT * _NNS)
        self._rst = _zeros(NCT * _NRS)
        self._ext = _zeros(AGG_WINDOWS * NCT * 2)  # window value extremes per aggregate slot
        self.probe = memoryview(self._work)[:_NPROBE]
        out = memoryview(self._out)
        self.rms_ua = out[_O_RMS : _O_RMS + NCT]
        self.avg_ua = out[_O_AVG : _O_AVG + NCT]
        self.cycle_ua = out[_O_CYCLE : _O_CYCLE + NCT]
        self.peak_ua = out[_O_PEAK : _O_PEAK + NCT]
        self.crest_x100 = out[_O_CREST : _O_CREST + NCT]
        self.clipped = out[_O_CLIP : _O_CLIP + NCT]
        self.offset_q4 = out[_O_OFFSET : _O_OFFSET + NCT]
        self.var_q8 = out[_O_VAR : _O_VAR + NCT]
        self.report_ua = out[_O_REPORT : _O_REPORT + NCT]
        self._floor_ma = floor_ma
        self._ctl[_C_TRACK] = 1 if track_noise else 0
        self._ctl[_C_PRIOR] = prior << 4
        self._gate_n = [0, 0]  # samples the gate margins were computed for: window, cycle
        for ch in range(NCT):
            self._cal[ch * _NCAL + _K_GAIN] = UA_PER_COUNT
            self._cal[ch * _NCAL + _K_NOISE] = prior
            self._set_floor(ch)
        self._noise_left = 0  # windows still to average in calibrate_noise()
        self._noise_sum = _zeros(NCT)
        self.set_mains(mains_mhz)
        self.reset()

    def reset(self):
        """Forget all history (e.g. after a gap in sampling)."""
        arrays = (self._acc, self._ring, self._len, self._len_q8, self._agg, self._out)
        for a in arrays + (self._iq, self._fund, self._pring, self._rst, self._ext):
            for i in range(len(a)):
                a[i] = 0
        for ch in range(NCT):
            self._out[_O_OFFSET + ch] = _MID << 4
            self._rst[ch * _NRS + _R_STEP] = 1
            self._rst[ch * _NRS + _R_BAND] = _BAND0 - 2
            self._rst[ch * _NRS + _R_CLO] = _EMPTY
            self._iq[2 * ch] = _BIAS
            self._iq[2 * ch + 1] = _BIAS
        self._fund[_F_SS] = _BIAS
        self._fund[_F_SC] = _BIAS
        self._fund[_F_INC] = (1 << 24) // (_F_NUM // self._mains_mhz)
        self._clear_acc()
        scan = self._scan
        scan[_S_ARMED] = 0
        scan[_S_MID] = _MID
        scan[_S_HYST] = 64
        scan[_S_COUNT] = 0
        scan[_S_HIT] = 0
        self._fallback_acc = 0
        scan[_S_LIMIT] = self._fallback_len()
        self._frac = 0  # sub-sample position of the last crossing, 1/256 sample
        self._head = MAX_WINDOW - 1
        self._filled = 0  # cycles in the ring
        self._in_window = 0  # cycles since the last completed window
        self._agg_head = AGG_WINDOWS - 1
        self._agg_count = 0
        self.cycle_done = False
        self.window_done = False
        self.ref_ok = False
        self.cycles = 0
        self.period_us = 0
        self.freq_mhz = self._mains_mhz
        self.window_cycles = self._cycles_for(self._mains_mhz)
        self.window_samples = 0

    # -- configuration (not on the hot path) --------------------------------------------

    def set_mains(self, mhz):
        """Mains frequency broadcast by the aggregator, mHz: times cycles without reference."""
        if not 40000 <= mhz <= 80000:
            raise ConfigError("mains frequency")
        self._mains_mhz = mhz
        self._fallback_q8 = _F_NUM // mhz

    def set_gain(self, ch, ppm):
        """Calibration gain of channel ``ch``; 1_000_000 ppm = nominal ``UA_PER_COUNT``."""
        gain = (UA_PER_COUNT * ppm + 500000) // 1000000
        if not 0 < gain < _MAX_GAIN:
            raise ConfigError("gain")
        self._cal[ch * _NCAL + _K_GAIN] = gain
        self._set_floor(ch)

    def set_noise(self, ch, var_q8):
        """ADC noise variance of channel ``ch``, counts^2 * 256, subtracted from every window.

        Taken as a full estimate of the channel's own (noise tracking goes on from it) and,
        like any channel's estimate, stands for the channels never idle yet.
        """
        if not 0 <= var_q8 < _MAX_NOISE:
            raise ConfigError("noise")
        self._cal[ch * _NCAL + _K_NOISE] = var_q8
        self._nst[ch * _NNS + _N_EST] = var_q8 << 4
        self._nst[ch * _NNS + _N_W] = _NW

    def noise(self, ch):
        """Noise variance subtracted on channel ``ch`` now, counts^2 * 256."""
        return self._cal[ch * _NCAL + _K_NOISE]

    def idle_windows(self, ch):
        """Idle windows in channel ``ch``'s own noise estimate (0: it uses the others')."""
        return self._nst[ch * _NNS + _N_W]

    def calibrate_noise(self, windows=25):
        """Measure every channel's noise variance over the next ``windows`` windows.

        Only with all outputs unloaded (production test): whatever current flows is taken
        for noise. Not needed for accuracy: the noise is tracked from idle windows anyway.
        ``calibrating`` is true until done; the result goes through ``set_noise``.
        """
        for ch in range(NCT):
            self._noise_sum[ch] = 0
        self._noise_windows = windows
        self._noise_left = windows

    @property
    def calibrating(self):
        return self._noise_left > 0

    def _set_floor(self, ch):
        # Floor as a variance in Q8 counts^2: (floor / gain)^2 * 256
        gain = self._cal[ch * _NCAL + _K_GAIN]
        floor = self._floor_ma * 1000 * 16 // gain
        self._cal[ch * _NCAL + _K_FLOOR] = min(floor * floor, _MAX_NOISE - 1)

    def _cycles_for(self, mhz):
        if self._fixed_cycles:
            return self._fixed_cycles
        return 10 if mhz < _SPLIT_MHZ else 12

    def _fallback_len(self):
        # Next cycle length without reference, carrying the fraction over
        acc = self._fallback_acc + self._fallback_q8
        self._fallback_acc = acc & 255
        return min(max(acc >> 8, MIN_CYCLE), MAX_CYCLE)

    def _clear_acc(self):
        acc = self._acc
        for ch in range(STRIDE):
            acc[ch * _NACC + _A_MAX] = 0
            acc[ch * _NACC + _A_MIN] = ADC_MAX

    # -- hot path -----------------------------------------------------------------------

    def feed(self, buf, start, stop):
        """Consume sample instants ``start``..``stop - 1`` of ``buf`` up to the end of a cycle.

        Returns the index of the first instant not consumed; ``cycle_done`` tells whether a
        mains cycle ended there (the outputs then describe it). Call again from the returned
        index until it reaches ``stop``.
        """
        scan = self._scan
        pos = _scan_ref(buf, start, stop, scan)  # pyright: ignore[reportArgumentType]
        _accumulate(buf, start, pos, self._acc)  # pyright: ignore[reportArgumentType]
        fund = self._fund
        fund[_F_J0] = scan[_S_COUNT] - (pos - start)
        _fundamental(buf, start, pos, self._iq, fund, self._sine)  # pyright: ignore[reportArgumentType]
        hit = scan[_S_HIT]
        self.cycle_done = hit != 0
        self.window_done = False
        if hit:
            scan[_S_HIT] = 0
            self._close_cycle(hit)
        return pos

    def _close_cycle(self, hit):
        scan = self._scan
        acc = self._acc
        count = scan[_S_COUNT]
        # Voltage reference: zero level, hysteresis, presence
        base = VREF * _NACC
        swing = acc[base + _A_MAX] - acc[base + _A_MIN]
        if hit == _HIT_CROSSING:
            v = scan[_S_V]
            frac = ((v - scan[_S_MID]) << 8) // (v - scan[_S_PREV])
        else:
            frac = 0
        len_q8 = (count << 8) + self._frac - frac
        self._frac = frac
        present = swing >= _REF_SWING
        self.ref_ok = present and hit == _HIT_CROSSING
        if present:
            scan[_S_MID] = acc[base + _A_S1] // count
            scan[_S_HYST] = max(swing >> 4, 16)
        acc[base + _A_S1] = 0
        acc[base + _A_S2] = 0
        acc[base + _A_MAX] = 0
        acc[base + _A_MIN] = ADC_MAX
        scan[_S_COUNT] = 0
        scan[_S_LIMIT] = MAX_CYCLE if present else self._fallback_len()
        self.period_us = (len_q8 * 39) >> 5  # * SAMPLE_US / 256
        # Ring of cycle lengths; window over the last 10/12 cycles
        head = self._head + 1
        if head == MAX_WINDOW:
            head = 0
        self._head = head
        self._len[head] = count
        self._len_q8[head] = len_q8
        if self._filled < MAX_WINDOW:
            self._filled += 1
        ncyc = self._cycles_for(self.freq_mhz if self.ref_ok else self._mains_mhz)
        self.window_cycles = ncyc
        ncyc = min(ncyc, self._filled)
        n = 0
        n_q8 = 0
        slot = head
        for _ in range(ncyc):
            n += self._len[slot]
            n_q8 += self._len_q8[slot]
            slot = slot - 1 if slot else MAX_WINDOW - 1
        self.window_samples = n
        if self.ref_ok:
            self.freq_mhz = _F_NUM // ((n_q8 + (ncyc >> 1)) // ncyc)
        else:
            self.freq_mhz = self._mains_mhz
        # A completed window enters the 3 s aggregate
        self._in_window += 1
        push = self._in_window >= self.window_cycles
        self.window_done = push
        if push:
            self._in_window = 0
            ahead = self._agg_head + 1
            if ahead == AGG_WINDOWS:
                ahead = 0
            self._agg_head = ahead
            if self._agg_count < AGG_WINDOWS:
                self._agg_count += 1
        ctl = self._ctl
        ctl[_C_HEAD] = head
        ctl[_C_NCYC] = ncyc
        ctl[_C_N] = n
        ctl[_C_NC] = count
        ctl[_C_PUSH] = push
        ctl[_C_AHEAD] = self._agg_head
        ctl[_C_ACOUNT] = self._agg_count
        gate = self._gate_n
        if gate[0] != n:
            gate[0] = n
            ctl[_C_WGATE] = _isqrt_int(_GATE_K2 // n)
        if gate[1] != count:
            gate[1] = count
            ctl[_C_CGATE] = _isqrt_int(_GATE_K2 // count)
        _fund_close(self._iq, self._fund, self._pring, ctl, acc, self._work)  # pyright: ignore[reportArgumentType]
        _window(acc, self._ring, ctl, self._cal, self._out, self._agg, self._work, self._rst)  # pyright: ignore[reportArgumentType]
        nst = self._nst
        rst = self._rst
        _noise_report(self._pring, ctl, self._cal, self._out, nst, rst, self._ext)  # pyright: ignore[reportArgumentType]
        self._fund[_F_INC] = (1 << 24) // len_q8  # next cycle's phase step: as long as this
        self.cycles = (self.cycles + 1) & 0x3FFFFFFF
        if push and self._noise_left:
            self._noise_window()

    def _noise_window(self):
        total = self._noise_sum
        for ch in range(NCT):
            total[ch] += min(self.var_q8[ch], _MAX_NOISE)
        self._noise_left -= 1
        if not self._noise_left:
            for ch in range(NCT):
                self.set_noise(ch, min(total[ch] // self._noise_windows, _MAX_NOISE - 1))


# -- viper kernels ------------------------------------------------------------------------


@micropython.viper
def _scan_ref(buf: ptr16, pos: int, stop: int, scan: ptr32) -> int:
    # Walk the reference channel to the end of the current cycle or of the block.
    armed = scan[_S_ARMED]
    mid = scan[_S_MID]
    low = mid - scan[_S_HYST]
    count = scan[_S_COUNT] - pos
    end = pos + scan[_S_LIMIT] - scan[_S_COUNT]  # where the cycle ends by force
    if end > stop:
        end = stop
    prev = scan[_S_PREV]
    hit = 0
    p = pos * STRIDE + VREF
    while pos < end:
        v = int(buf[p])
        if v < low:
            armed = 1
        elif armed and v >= mid:
            armed = 0  # a crossing sooner than MIN_CYCLE is noise: wait for the next
            if count + pos >= MIN_CYCLE:
                hit = _HIT_CROSSING
                scan[_S_V] = v
                break
        prev = v
        pos += 1
        p += STRIDE
    count += pos
    if not hit and count >= scan[_S_LIMIT]:
        hit = _HIT_FORCED
    scan[_S_ARMED] = armed
    scan[_S_COUNT] = count
    scan[_S_PREV] = prev
    scan[_S_HIT] = hit
    return pos


@micropython.viper
def _accumulate(buf: ptr16, pos: int, stop: int, acc: ptr32):
    # Per channel: sum(x), sum((x - 2048)^2), max, min over instants pos..stop-1.
    c = 0
    while c < STRIDE:
        a = c * _NACC
        s1 = acc[a + _A_S1]
        s2 = acc[a + _A_S2]
        top = acc[a + _A_MAX]
        bottom = acc[a + _A_MIN]
        p = pos * STRIDE + c
        end = stop * STRIDE + c
        while p < end:
            x = int(buf[p])
            s1 += x
            d = x - _MID
            s2 += d * d
            if x > top:
                top = x
            if x < bottom:
                bottom = x
            p += STRIDE
        acc[a + _A_S1] = s1
        acc[a + _A_S2] = s2
        acc[a + _A_MAX] = top
        acc[a + _A_MIN] = bottom
        c += 1


@micropython.viper
def _isqrt(hi: int, lo: int, work: ptr32) -> int:
    # Rounded square root of hi << 14 | lo (hi < 2^30), two bits at a time.
    root = 0
    rem = 0
    shift = 28
    while shift >= 0:
        rem = (rem << 2) | ((hi >> shift) & 3)
        trial = (root << 2) | 1
        root <<= 1
        if rem >= trial:
            rem -= trial
            root |= 1
        shift -= 2
    shift = 12
    while shift >= 0:
        rem = (rem << 2) | ((lo >> shift) & 3)
        trial = (root << 2) | 1
        root <<= 1
        if rem >= trial:
            rem -= trial
            root |= 1
        shift -= 2
    if (rem >> 13) > work[_P_ISQRT]:
        work[_P_ISQRT] = rem >> 13  # rem << 2 >> 15
    if rem > root:
        root += 1
    return root


@micropython.viper
def _window(
    acc: ptr32, ring: ptr32, ctl: ptr32, cal: ptr32, out: ptr32, agg: ptr32, work: ptr32, rst: ptr32
):
    # Close the cycle in acc into the ring and evaluate window, cycle and aggregate.
    head = ctl[_C_HEAD]
    ncyc = ctl[_C_NCYC]
    n = ctl[_C_N]
    nc = ctl[_C_NC]
    push = ctl[_C_PUSH]
    ahead = ctl[_C_AHEAD]
    acount = ctl[_C_ACOUNT]
    wgate = ctl[_C_WGATE]
    cgate = ctl[_C_CGATE]
    c = 0
    while c < NCT:
        a = c * _NACC
        r = (head * NCT + c) * _NACC
        cs1 = acc[a + _A_S1]
        cs2 = acc[a + _A_S2]
        ring[r + _A_S1] = cs1
        ring[r + _A_S2] = cs2
        ring[r + _A_MAX] = acc[a + _A_MAX]
        ring[r + _A_MIN] = acc[a + _A_MIN]
        acc[a + _A_S1] = 0
        acc[a + _A_S2] = 0
        acc[a + _A_MAX] = 0
        acc[a + _A_MIN] = ADC_MAX
        k = c * _NCAL
        gain = cal[k + _K_GAIN]
        noise = cal[k + _K_NOISE]
        floor = cal[k + _K_FLOOR]
        # The gate's margin over the noise: the floor, or 6 sigma of the variance estimate
        wfloor = (noise * wgate) >> 8
        if wfloor < floor:
            wfloor = floor
        if wfloor >= _MAX_NOISE:
            wfloor = _MAX_NOISE - 1
        cfloor = (noise * cgate) >> 8
        if cfloor < floor:
            cfloor = floor
        if cfloor >= _MAX_NOISE:
            cfloor = _MAX_NOISE - 1

        # Window sums; sum(d^2) as two limbs
        s1 = 0
        hi = 0
        lo = 0
        top = 0
        bottom = ADC_MAX
        slot = head
        i = 0
        while i < ncyc:
            r = (slot * NCT + c) * _NACC
            s1 += ring[r + _A_S1]
            s2 = ring[r + _A_S2]
            hi += s2 >> _LB
            lo += s2 & _LM
            if ring[r + _A_MAX] > top:
                top = ring[r + _A_MAX]
            if ring[r + _A_MIN] < bottom:
                bottom = ring[r + _A_MIN]
            slot = slot - 1 if slot else MAX_WINDOW - 1
            i += 1
        if (s1 >> 15) > work[_P_S1]:
            work[_P_S1] = s1 >> 15
        if (hi >> 15) > work[_P_S2_HI]:
            work[_P_S2_HI] = hi >> 15
        if (lo >> 15) > work[_P_S2_LO]:
            work[_P_S2_LO] = lo >> 15
        sd = s1 - _MID * n
        rq9 = int(_rms_q9(n, s1, hi, lo, noise, wfloor, work))
        rst[c * _NRS + _R_W] = rq9
        ua = (rq9 >> 9) * gain
        if (ua >> 15) > work[_P_UA]:
            work[_P_UA] = ua >> 15
        out[_O_RMS + c] = ua + (((rq9 & 511) * gain + 256) >> 9)

        # Raw variance (Q8) for noise calibration, when small enough to matter
        var = 0x3FFFFFFF
        vh = work[_W_VH]
        if vh < 0x10000:
            v = (vh << _LB) | work[_W_VL]
            q = v // n
            if q < 0x400000:
                var = ((q << 8) + (((v - q * n) << 8) // n)) // n
        out[_O_VAR + c] = var

        # DC offset (Q4, clamped) from the window mean; peak and crest factor around it
        o = (sd * 16 + (n >> 1)) // n
        if o > _OFF_SPAN:
            o = _OFF_SPAN
        elif o < 0 - _OFF_SPAN:
            o = 0 - _OFF_SPAN
        level = (_MID << 4) + o
        out[_O_OFFSET + c] = level
        pk = (top << 4) - level
        if level - (bottom << 4) > pk:
            pk = level - (bottom << 4)
        if pk < 0:
            pk = 0
        ua = (pk >> 4) * gain
        if (ua >> 15) > work[_P_UA]:
            work[_P_UA] = ua >> 15
        out[_O_PEAK + c] = ua + (((pk & 15) * gain + 8) >> 4)
        crest = 0
        if rq9:
            crest = (pk * 3200 + (rq9 >> 1)) // rq9  # (pk / 16) / (rq9 / 512) * 100
            if crest > 0xFFFF:
                crest = 0xFFFF
        if ((pk * 3200) >> 15) > work[_P_CREST]:
            work[_P_CREST] = (pk * 3200) >> 15
        out[_O_CREST + c] = crest
        out[_O_CLIP + c] = 1 if bottom == 0 or top == ADC_MAX else 0

        # Cycle RMS, offset removed the same way (a trip shows in the very next cycle)
        cq9 = int(_rms_q9(nc, cs1, cs2 >> _LB, cs2 & _LM, noise, cfloor, work))
        out[_O_CYCLE + c] = (cq9 >> 9) * gain + (((cq9 & 511) * gain + 256) >> 9)

        # 3 s aggregate: quadratic mean of the last AGG_WINDOWS window values
        if push:
            ma = rq9 >> _LB
            mb = rq9 & _LM
            sq = mb * mb
            r = (ahead * NCT + c) * 2
            agg[r] = ((ma * ma) << _LB) + 2 * ma * mb + (sq >> _LB)
            agg[r + 1] = sq & _LM
            hi = 0
            lo = 0
            i = 0
            while i < acount:
                r = (i * NCT + c) * 2
                hi += agg[r]
                lo += agg[r + 1]
                i += 1
            hi += lo >> _LB
            lo &= _LM
            if (hi >> 15) > work[_P_AGG_HI]:
                work[_P_AGG_HI] = hi >> 15
            qh = hi // acount
            lo = (((hi - qh * acount) << _LB) + lo) // acount
            qh += lo >> _LB
            lo &= _LM
            root = int(_isqrt(qh, lo, work))  # RMS in counts, Q9
            rst[c * _NRS + _R_AGG] = root
            out[_O_AVG + c] = (root >> 9) * gain + (((root & 511) * gain + 256) >> 9)
        c += 1


@micropython.viper
def _rms_q9(n: int, s1: int, hi: int, lo: int, noise: int, floor: int, work: ptr32) -> int:
    # RMS in counts * 2^9 of n samples with sum(x) = s1 and sum((x - 2048)^2) = hi << 14 | lo
    # (lo may exceed 14 bits), less the noise; 0 under the floor. Leaves V = n^2 * variance
    # in work[_W_VH], work[_W_VL] and the largest intermediates in the probe slots.
    hi += lo >> _LB
    lo &= _LM
    sd = s1 - _MID * n

    # V = n * sum(d^2) - sum(d)^2
    vh = n * hi
    vl = n * lo
    if (vh >> 15) > work[_P_NS2]:
        work[_P_NS2] = vh >> 15
    if (vl >> 15) > work[_P_NS2_LO]:
        work[_P_NS2_LO] = vl >> 15
    vh += vl >> _LB
    vl &= _LM
    m = sd if sd >= 0 else 0 - sd
    ma = m >> _LB
    mb = m & _LM
    sq = mb * mb
    if (sq >> 15) > work[_P_SD_SQ]:
        work[_P_SD_SQ] = sq >> 15
    sqh = ((ma * ma) << _LB) + 2 * ma * mb + (sq >> _LB)
    if (sqh >> 15) > work[_P_SD_SQ_HI]:
        work[_P_SD_SQ_HI] = sqh >> 15
    vh -= sqh
    vl -= sq & _LM
    if vl < 0:
        vl += 1 << _LB
        vh -= 1
    if (vh >> 15) > work[_P_V_HI]:
        work[_P_V_HI] = vh >> 15
    work[_W_VH] = vh
    work[_W_VL] = vl

    # Gate G = n^2 * (noise + floor) / 256: under it the channel reads 0
    t = n * (noise + floor)
    tb = (t & _LM) * n
    if (tb >> 15) > work[_P_NOISE]:
        work[_P_NOISE] = tb >> 15
    gh = (t >> _LB) * n + (tb >> _LB)
    gl = ((gh & 255) << 6) | ((tb & _LM) >> 8)
    gh >>= 8
    if vh < gh or (vh == gh and vl < gl):
        return 0

    # Subtract N = n^2 * noise / 256
    t = n * noise
    tb = (t & _LM) * n
    nh = (t >> _LB) * n + (tb >> _LB)
    vl -= ((nh & 255) << 6) | ((tb & _LM) >> 8)
    vh -= nh >> 8
    if vl < 0:
        vl += 1 << _LB
        vh -= 1
    root9 = int(_isqrt(vh, vl, work)) << 9
    if (root9 >> 15) > work[_P_ROOT9]:
        work[_P_ROOT9] = root9 >> 15
    return (root9 + (n >> 1)) // n


@micropython.viper
def _fundamental(buf: ptr16, pos: int, stop: int, iq: ptr32, fund: ptr32, tab: ptr8):
    # Per channel: sum(d * sin), sum(d * cos) over instants pos..stop-1 of the current cycle
    # (d = x - 2048, phase 0 at the cycle's first instant, 64-point table of amplitude 64),
    # and the sums of the sine and cosine themselves, for the DC correction.
    inc = int(fund[_F_INC])
    ph0 = int(fund[_F_J0]) * inc
    ss = int(fund[_F_SS]) - _BIAS
    sc = int(fund[_F_SC]) - _BIAS
    ph = ph0
    k = pos
    while k < stop:
        i = (ph >> 10) & 63
        ss += int(tab[i]) - _TAB_A
        sc += int(tab[(i + 16) & 63]) - _TAB_A
        ph += inc
        k += 1
    fund[_F_SS] = ss + _BIAS
    fund[_F_SC] = sc + _BIAS
    c = 0
    while c < NCT:
        si = int(iq[2 * c]) - _BIAS
        sq = int(iq[2 * c + 1]) - _BIAS
        p = pos * STRIDE + c
        end = stop * STRIDE + c
        ph = ph0
        while p < end:
            d = int(buf[p]) - _MID
            i = (ph >> 10) & 63
            si += d * (int(tab[i]) - _TAB_A)
            sq += d * (int(tab[(i + 16) & 63]) - _TAB_A)
            ph += inc
            p += STRIDE
        iq[2 * c] = si + _BIAS
        iq[2 * c + 1] = sq + _BIAS
        c += 1


@micropython.viper
def _fund_close(iq: ptr32, fund: ptr32, pring: ptr32, ctl: ptr32, acc: ptr32, work: ptr32):
    # Power of the cycle's fundamental per channel, I^2 + Q^2 with the channel's DC removed
    # (sum(d) * sum(table) / n), saturated at _P_SAT, into the ring slot of the cycle.
    head = int(ctl[_C_HEAD])
    nc = int(ctl[_C_NC])
    ss = int(fund[_F_SS]) - _BIAS
    sc = int(fund[_F_SC]) - _BIAS
    ass = ss if ss >= 0 else 0 - ss
    asc = sc if sc >= 0 else 0 - sc
    if asc > ass:
        ass = asc
    c = 0
    while c < NCT:
        sd = int(acc[c * _NACC + _A_S1]) - _MID * nc
        i = int(iq[2 * c]) - _BIAS
        q = int(iq[2 * c + 1]) - _BIAS
        iq[2 * c] = _BIAS
        iq[2 * c + 1] = _BIAS
        m = i if i >= 0 else 0 - i
        if (q if q >= 0 else 0 - q) > m:
            m = q if q >= 0 else 0 - q
        if (m >> 15) > work[_P_IQ]:
            work[_P_IQ] = m >> 15
        m = (sd if sd >= 0 else 0 - sd) * ass
        if (m >> 15) > work[_P_DC]:
            work[_P_DC] = m >> 15
        i -= (sd * ss) // nc
        q -= (sd * sc) // nc
        if i >= _IQ_MAX or q >= _IQ_MAX or i <= 0 - _IQ_MAX or q <= 0 - _IQ_MAX:
            pw = _P_SAT
        else:
            pw = i * i + q * q
        pring[head * NCT + c] = pw
        c += 1
    fund[_F_SS] = _BIAS
    fund[_F_SC] = _BIAS


@micropython.viper
def _noise_report(
    pring: ptr32, ctl: ptr32, cal: ptr32, out: ptr32, nst: ptr32, rst: ptr32, ext: ptr32
):
    # After a cycle: learn the noise from idle completed windows, choose the reported value.
    head = int(ctl[_C_HEAD])
    ncyc = int(ctl[_C_NCYC])
    n = int(ctl[_C_N])
    push = int(ctl[_C_PUSH])
    ahead = int(ctl[_C_AHEAD])
    track = int(ctl[_C_TRACK])
    learned = 0
    c = 0
    while c < NCT:
        # Noise: a completed window whose fundamental is no stronger than noise makes it.
        # Until the first completed one, the sliding window stands in (replaced each cycle)
        if track and (push or int(nst[c * _NNS + _N_W]) <= 1):
            var = int(out[_O_VAR + c])
            if var < _MAX_NOISE:
                pw = 0
                slot = head
                i = 0
                while i < ncyc:
                    pw += int(pring[slot * NCT + c])
                    slot = slot - 1 if slot else MAX_WINDOW - 1
                    i += 1
                if pw < _IDLE_K * var * n:
                    k = c * _NNS
                    w = int(nst[k + _N_W]) + 1
                    if w > _NW:
                        w = _NW
                    if not push:
                        w = 1
                    est = int(nst[k + _N_EST])
                    if var * 16 >= est:
                        nst[k + _N_EST] = est + (var * 16 - est) // w
                    else:
                        nst[k + _N_EST] = est - (est - var * 16) // w
                    nst[k + _N_W] = w
                    learned = 1

        # Reported value: the aggregate unless the window has left the band of the window
        # values since the last step (or, before there is one, the aggregate) by 1/32
        r = c * _NRS
        wv = int(rst[r + _R_W])
        a = int(rst[r + _R_AGG])
        if push:
            e = (ahead * NCT + c) * 2
            lo = int(rst[r + _R_CLO])
            hi = int(rst[r + _R_CHI])
            ext[e] = wv if wv < lo else lo
            ext[e + 1] = wv if wv > hi else hi
            rst[r + _R_CLO] = _EMPTY
            rst[r + _R_CHI] = 0
            bc = int(rst[r + _R_BAND]) - _BAND0 + 1
            if bc > AGG_WINDOWS:
                bc = AGG_WINDOWS
            rst[r + _R_BAND] = bc + _BAND0
            if bc >= 1:
                lo = _EMPTY
                hi = 0
                slot = ahead
                i = 0
                while i < bc:
                    e = (slot * NCT + c) * 2
                    if int(ext[e]) < lo:
                        lo = int(ext[e])
                    if int(ext[e + 1]) > hi:
                        hi = int(ext[e + 1])
                    slot = slot - 1 if slot else AGG_WINDOWS - 1
                    i += 1
                rst[r + _R_LO] = lo
                rst[r + _R_HI] = hi
        else:
            if wv < int(rst[r + _R_CLO]):
                rst[r + _R_CLO] = wv
            if wv > int(rst[r + _R_CHI]):
                rst[r + _R_CHI] = wv
        m = a >> 5
        step = int(rst[r + _R_STEP])
        bc = int(rst[r + _R_BAND]) - _BAND0
        d = wv - a if wv > a else a - wv
        trigger = 0
        if a == 0:
            trigger = 1
        elif bc >= 1:
            if wv > int(rst[r + _R_HI]) + m or wv + m < int(rst[r + _R_LO]):
                trigger = 1
        elif not step and d > m:
            trigger = 1
        if trigger:
            step = 1
            if a == 0 or bc >= 1:  # the band restarts with the second window after this
                rst[r + _R_BAND] = _BAND0 - 2
        elif step and (d <= m or bc >= AGG_WINDOWS - 2):
            step = 0
        rst[r + _R_STEP] = step
        v = wv if step else a
        if wv == 0:
            v = 0
        gain = int(cal[c * _NCAL + _K_GAIN])
        out[_O_REPORT + c] = (v >> 9) * gain + (((v & 511) * gain + 256) >> 9)
        c += 1

    # Noise to subtract per channel: its own estimate, shrunk towards the weighted mean of
    # all channels' estimates (the prior while no channel has been idle) by its idle windows
    if track and (push or learned):
        tw = 0
        te = 0
        c = 0
        while c < NCT:
            w = int(nst[c * _NNS + _N_W])
            tw += w
            te += int(nst[c * _NNS + _N_EST]) * w
            c += 1
        pool = int(ctl[_C_PRIOR])
        if tw:
            pool = te // tw
        c = 0
        while c < NCT:
            w = int(nst[c * _NNS + _N_W])
            v = (int(nst[c * _NNS + _N_EST]) * w + pool * (_NW - w)) // _NW
            v = (v + 8) >> 4
            if v >= _MAX_NOISE:
                v = _MAX_NOISE - 1
            if v < 0:
                v = 0
            cal[c * _NCAL + _K_NOISE] = v
            c += 1
