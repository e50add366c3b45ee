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
or two, fully after one window (200 ms); the reported value shows it a cycle after it (the
cycles since a step alone, ``firmware.rms_report``). Every 10/12 cycles a completed window
also enters the 3 s aggregate (150/180 cycles, the quadratic mean of 15 windows, as IEC 61000-4-30
aggregates its 10/12-cycle values): that is the steady reading for display and reports
(for a small steady current averaged longer: ``firmware.rms_report``, "Steady reading").

Per window, and per cycle for the classifier: the exact variance n * sum(d^2) - sum(d)^2
(the offset is removed without a filter that would need to settle), less n^2 times the
channel's noise variance (ADC noise and quantisation); when what is left is under the gate
margin, the larger of the noise floor (``floor_ma``, default 40 mA) and 6 sigma of the
noise's own variance estimate (noise * 6 * sqrt(2 / n)), the channel reads exactly 0. Peak
is the largest distance of a sample from the window mean, crest factor = peak / RMS.


The kernels live in their own modules, by concern: ``firmware.rms_window`` (cycle end, sums,
window, cycle and 3 s aggregate, and the 32-bit proof of their bounds), ``firmware.rms_noise``
(noise estimated without a commissioning step: the idle gate from the cycle's fundamental)
and ``firmware.rms_report`` (the reported value: load steps, and the steady reading that
averages a small steady current over up to 27 s). This module ties them together.


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

from array import array

from micropython import const

from firmware.rms_noise import fund_close, fundamental, learn_noise, sine_table
from firmware.rms_report import choose_report, steady
from firmware.rms_window import accumulate, close_window, scan_ref

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
_MAX_GAIN = const(1 << 17)  # uA per count; keeps limb products below 2^31
_MAX_NOISE = const(1 << 12)  # Q8 counts^2 (16 counts^2): noise + floor < 2^13
_NOISE_Q8 = const(64)  # 1/4 LSB^2: quantisation (1/12) + +-1 LSB triangular noise (1/6)
_NW = const(16)  # idle windows a channel's own noise estimate averages (then EMA 1/16)
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
_C_BDONE = const(11)  # 1: the window completed an aggregation block
_C_BHEAD = const(12)  # block ring slot of the last completed block
_NCTL = const(13)
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
_R_CLO = const(3)  # extremes of the window values since the last completed window
_R_STEP = const(5)  # 1: a load step, the window is reported
_R_BAND = const(6)  # completed windows in the band (< 1: none yet)
_R_LONG = const(8)  # the steady reading (3 s aggregate, extended while steady)
_R_NB = const(9)  # completed blocks in it (0: the 3 s aggregate)
_R_POST = const(10)  # completed windows since the last step (saturates)
_R_SINCE = const(11)  # cycles closed since the last step was seen (saturates at MAX_WINDOW)
_R_SHORT = const(12)  # RMS of those cycles alone, while fewer than the window's
_NRS = const(13)
_RING_LEN = const(576)  # ring words after the per-channel slots: samples per cycle, by slot
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
_NPROBE = const(16)
_NWORK = const(18)
_NBLK = const(8)  # completed 3 s blocks a steady reading extends over


class ConfigError(ValueError):
    """A setting of the engine is out of range."""


def _zeros(n):
    return array("i", bytearray(4 * n))  # MicroPython takes a bytearray as raw contents


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
    - ``avg_ua``: the steady reading, uA: the 3 s aggregate (quadratic mean of the last 15
      windows), for a small steady current extended over up to 27 s (``firmware.rms_report``)
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
        self._ring = _zeros(_RING_LEN + MAX_WINDOW)
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
        self._sine = sine_table()
        self._nst = _zeros(NCT * _NNS)
        self._rst = _zeros(NCT * _NRS)
        self._ext = _zeros(AGG_WINDOWS * NCT * 2)  # window value extremes per aggregate slot
        self._blk = _zeros(_NBLK * NCT * 2)  # completed 3 s blocks: sum of their window values^2
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
        for a in arrays + (self._iq, self._fund, self._pring, self._rst, self._ext, self._blk):
            for i in range(len(a)):
                a[i] = 0
        for ch in range(NCT):
            self._out[_O_OFFSET + ch] = _MID << 4
            self._rst[ch * _NRS + _R_STEP] = 1
            self._rst[ch * _NRS + _R_BAND] = _BAND0 - 2
            self._rst[ch * _NRS + _R_CLO] = _EMPTY
            self._rst[ch * _NRS + _R_SINCE] = MAX_WINDOW
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
        self._ctl[_C_BHEAD] = _NBLK - 1
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
        pos = scan_ref(buf, start, stop, scan)  # pyright: ignore[reportArgumentType]
        accumulate(buf, start, pos, self._acc)  # pyright: ignore[reportArgumentType]
        fund = self._fund
        fund[_F_J0] = scan[_S_COUNT] - (pos - start)
        fundamental(buf, start, pos, self._iq, fund, self._sine)  # pyright: ignore[reportArgumentType]
        hit = scan[_S_HIT]
        self.cycle_done = hit != 0
        self.window_done = False
        if hit:
            scan[_S_HIT] = 0
            self._close_cycle(hit)
        return pos

    def _close_cycle(self, hit):
        count = self._scan[_S_COUNT]
        len_q8 = self._close_reference(hit, count)
        self._window_span(count, len_q8)  # into ctl (a returned tuple would allocate)
        ctl = self._ctl
        n = ctl[_C_N]
        # A completed window enters the 3 s aggregate; 15 of them complete a block
        self._in_window += 1
        push = self._in_window >= self.window_cycles
        self.window_done = push
        ctl[_C_BDONE] = 0
        if push:
            self._in_window = 0
            ahead = self._agg_head + 1
            if ahead == AGG_WINDOWS:
                ahead = 0
            self._agg_head = ahead
            if self._agg_count < AGG_WINDOWS:
                self._agg_count += 1
            if ahead == AGG_WINDOWS - 1:
                ctl[_C_BDONE] = 1
                bhead = ctl[_C_BHEAD] + 1
                ctl[_C_BHEAD] = 0 if bhead == _NBLK else bhead
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
        acc = self._acc
        cal = self._cal
        out = self._out
        rst = self._rst
        fund_close(self._iq, self._fund, self._pring, ctl, acc, self._work)  # pyright: ignore[reportArgumentType]
        close_window(acc, self._ring, ctl, cal, out, self._agg, self._work, rst)  # pyright: ignore[reportArgumentType]
        learn_noise(self._pring, ctl, cal, out, self._nst)  # pyright: ignore[reportArgumentType]
        if push:
            steady(self._agg, self._blk, ctl, cal, out, rst, self._work)  # pyright: ignore[reportArgumentType]
        choose_report(ctl, cal, out, rst, self._ext, self._work)  # pyright: ignore[reportArgumentType]
        self._fund[_F_INC] = (1 << 24) // len_q8  # next cycle's phase step: as long as this
        self.cycles = (self.cycles + 1) & 0x3FFFFFFF
        if push and self._noise_left:
            self._noise_window()

    def _close_reference(self, hit, count):
        # Voltage reference: zero level, hysteresis, presence; the cycle's length, 1/256 sample
        scan = self._scan
        acc = self._acc
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
        return len_q8

    def _window_span(self, count, len_q8):
        # Ring of cycle lengths; the window over the last 10/12 cycles and its frequency
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
        ctl = self._ctl
        ctl[_C_HEAD] = head
        ctl[_C_NCYC] = ncyc
        ctl[_C_N] = n

    def _noise_window(self):
        total = self._noise_sum
        for ch in range(NCT):
            total[ch] += min(self.var_q8[ch], _MAX_NOISE)
        self._noise_left -= 1
        if not self._noise_left:
            for ch in range(NCT):
                self.set_noise(ch, min(total[ch] // self._noise_windows, _MAX_NOISE - 1))
