"""Synthetic ADC samples of 12 CT channels and the voltage reference, for the sim board.

``LoadSim.fill()`` writes sample instants in the layout ``firmware.rms`` reads (13 values per
instant, 12 CTs then the voltage reference, one instant every ``rms.SAMPLE_US``) as a real
board's ADC would: 12-bit codes around a mid-rail offset that drifts slowly, +-1 LSB
triangular noise (1/4 LSB^2 with the quantisation) or, with ``noise_lsb``, Gaussian noise of
that many LSB rms (``noise_lsb ** 2 + 1/12`` LSB^2; a real MCP3208 board has about 1 LSB),
clipping at 0 and 4095.

The voltage reference is a sine of 1500 counts peak. Every load kind is one mains cycle of
a unit waveform (RMS 1), tabulated in ``2 ** table_bits`` points (1024 by default; the sim
board takes 256 to save RAM: 6.7 KB of tables instead of 26.6 KB) per ``set_load`` against
the phase of the mains voltage (0 = its rising zero crossing) and scaled to the load's
current. The viper kernel walks a 24-bit phase accumulator, interpolates the table linearly
and scales with integers only, so several boards run faster than real time on the unix port.
The mains frequency can be anything from 40 to 80 Hz: the number of samples per cycle is not
an integer. ``fill`` allocates nothing for steady loads (integer maths only; the offset drift
reads the voltage reference's sine table); floats are used when a load is set, while a motor's
inrush decays and for the AUDIO programme.

Load kinds: ``OFF``; ``RESISTIVE`` (sine); ``LED`` (LED driver behind a capacitor-input
rectifier: a current pulse before each voltage peak, crest factor 3.46); ``DIMMER``
(leading-edge phase cut at ``angle`` degrees; the current rises through the dimmer's
choke with ``rise_us`` 10-90 %, as stage dimmers are built); ``MOTOR`` (lags 37 degrees,
some 3rd harmonic; from ``set_load`` on an inrush of ``inrush`` times the running current
decays to 5 % in ``inrush_ms``); ``SMPS`` (switch-mode supply or projector with power-factor
correction: nearly sinusoidal, some odd harmonics); ``AUDIO`` (class-D amplifier: rectifier
pulses whose size follows the programme, changing every ``fill``).

Any load can flicker (``flicker_hz``, ``depth``: its current modulated by
``1 + depth * sin(2 pi flicker_hz t)``, a new value every ``fill``, as an LED wall's dimming
does); that is a float path too.

Counters of sample instants (``samples``, a motor's start) wrap like ``time.ticks_*`` values
and are only combined with ``ticks_add``/``ticks_diff``; the offset's slow wander is a 24-bit
phase accumulator: on a 32-bit port (small ints of 31 bits) ``fill`` makes no big ints.

Overload and trip are driven by calling ``set_load`` at run time (``OFF`` = the breaker
opened); ``set_mains`` changes the frequency without a jump in phase. ``exact_sum_sq`` gives
the exact integral of the square of the continuous, unquantised waveform (the table
interpolated linearly, as the kernel does) over instants of the last ``fill``: the
benchmark's reference value.
"""

import math
from array import array
from time import ticks_add, ticks_diff

import micropython
from micropython import const

from firmware import rms

OFF = const(0)
RESISTIVE = const(1)
LED = const(2)
DIMMER = const(3)
MOTOR = const(4)
SMPS = const(5)
AUDIO = const(6)
KINDS = ("off", "resistive", "led", "dimmer", "motor", "smps", "audio")

_PHASE_BITS = const(24)
_PHASE_MASK = const(0xFFFFFF)  # 24-bit phase: one mains cycle
_UNIT = const(4096)  # table value of an RMS of 1
_BIAS = const(32768)  # tables are stored unsigned
_NPAR = const(4)  # per channel: table base, amplitude, its shift, offset (Q8 counts)
_REF_PEAK = 1500.0  # counts, voltage reference amplitude
_SINE_PEAK = const(5793)  # table value of a unit-RMS sine's peak: 4096 * sqrt(2)
_STRIDE = const(13)  # rms.STRIDE, as a constant the viper kernel can use
_ADC_MAX = const(4095)
_GAUSS_BITS = const(10)  # Gaussian noise: inverse-CDF table of 1024 points, Q8 counts
_GAUSS_MASK = const(1023)


class LoadError(ValueError):
    """Unknown load kind."""


class LoadSim:
    """Sample source for one group board.

    ``offset_drift``: counts by which each channel's mid-rail offset wanders (slow sine of
    period ``drift_s``, a different phase per channel). ``ref=False`` leaves the voltage
    reference flat (a board without one). ``seed`` seeds the noise. ``table_bits``: log2 of
    the points per cycle of each channel's waveform table (13 tables of ``2 ** table_bits + 1``
    16-bit words). ``noise_lsb``: 0 for +-1 LSB triangular noise, else the rms of Gaussian
    noise in LSB (0.05..8; a 1024-word inverse-CDF table, its variance exactly
    ``noise_lsb ** 2``, tails cut at 3.4 sigma).
    """

    def __init__(
        self,
        mains_mhz=50000,
        seed=1,
        ref=True,
        offset_drift=8,
        drift_s=60,
        table_bits=10,
        noise_lsb=0,
    ):
        if not 6 <= table_bits <= 12:
            raise ValueError("table_bits 6..12")
        if noise_lsb and not 0.05 <= noise_lsb <= 8:
            raise ValueError("noise_lsb 0.05..8")
        n = rms.STRIDE
        npts = 1 << table_bits
        self._npts = npts  # table points per mains cycle
        self._seg_bits = _PHASE_BITS - table_bits  # phase units per table segment, log2
        self._tables = array("H", bytearray(2 * n * (npts + 1)))
        self._par = array("i", bytearray(4 * n * _NPAR))
        # phase, increment, noise, table index shift, interpolation fraction shift, Gaussian
        gauss = 1 if noise_lsb else 0
        self._state = array(
            "i", [0, 0, seed & 0x3FFFFFFF, self._seg_bits, self._seg_bits - 8, gauss]
        )
        self._gauss = _gauss_table(noise_lsb) if gauss else array("H", [_BIAS])
        self.noise_lsb = noise_lsb
        self._kind = bytearray(n)
        self._options: list = [{}] * n
        self._counts = [0.0] * n  # RMS of the running load, counts
        self._started = [0] * n  # sample count at set_load (start of the inrush)
        self._flicker = [0.0] * n  # radians of the flicker per sample instant (0: steady)
        self._flicker_at = [0.0] * n  # flicker phase at the start of the next fill, radians
        self._table_rms = [float(_UNIT)] * n
        self._dirty = bytearray(b"\x01" * n)  # amplitude to be rescaled
        self._cum: list = [None] * n  # cumulative energy tables for exact_sum_sq
        self._programme_state = 1  # of AUDIO loads
        self._drift_q8 = int(offset_drift * 256)  # Q8 counts
        # 24-bit phase of the offset's wander, advanced per sample instant
        self._drift_inc = max(1, round((1 << _PHASE_BITS) * rms.SAMPLE_US / (drift_s * 1e6)))
        self._drift_phase = 0
        self._block_phase = 0
        self.samples = 0  # sample instants generated so far
        for i in range(len(self._tables)):
            self._tables[i] = _BIAS  # no current
        for ch in range(n):
            self._par[ch * _NPAR] = ch * (npts + 1)
        self._store(rms.VREF, _harmonics(((1, 1.0, 0.0),), npts))
        self._counts[rms.VREF] = _REF_PEAK / math.sqrt(2) if ref else 0.0
        self.set_mains(mains_mhz)

    def set_mains(self, mhz):
        """Mains frequency in mHz; the loads keep their currents."""
        self.mains_mhz = mhz
        # phase increment per sample: f * T * 2^24
        self._state[1] = (mhz * rms.SAMPLE_US * 16777216 + 500_000_000) // 1_000_000_000
        for ch in range(rms.NCT):
            if self._kind[ch] == DIMMER:  # the choke's rise time is a fixed time
                self._shape(ch)

    def set_load(self, ch, kind, ma=0, **options):
        """Connect a load of ``kind`` drawing ``ma`` mA RMS to output ``ch`` (0..11).

        Options: ``angle`` (DIMMER firing angle, degrees, default 90), ``rise_us`` (DIMMER
        choke rise time, default 200), ``inrush`` and ``inrush_ms`` (MOTOR, default 6 and
        300), ``flicker_hz`` and ``depth`` (any kind: amplitude modulation, default 0 and
        0.3; ``ma`` is the unmodulated current). Takes effect with the next ``fill``; a
        MOTOR starts then.
        """
        if not 0 <= kind < len(KINDS):
            raise LoadError("kind")
        self._kind[ch] = kind
        self._options[ch] = options
        self._counts[ch] = ma * 1000 / rms.UA_PER_COUNT if kind != OFF else 0.0
        self._started[ch] = self.samples
        hz = options.get("flicker_hz", 0)
        self._flicker[ch] = 2 * math.pi * hz * rms.SAMPLE_US * 1e-6 if kind != OFF else 0.0
        self._flicker_at[ch] = 0.0
        self._shape(ch)

    def current_ma(self, ch):
        """Steady RMS current of the load on ``ch``, mA (before inrush or programme)."""
        return self._counts[ch] * rms.UA_PER_COUNT / 1000

    def _shape(self, ch):
        kind = self._kind[ch]
        options = self._options[ch]
        n = self._npts
        if kind == RESISTIVE:
            wave = _harmonics(((1, 1.0, 0.0),), n)
        elif kind == LED:
            wave = _pulses(52, 40, n)
        elif kind == DIMMER:
            f = self.mains_mhz / 1000
            wave = _dimmer(options.get("angle", 90), options.get("rise_us", 200), f, n)
        elif kind == MOTOR:
            wave = _harmonics(((1, 1.0, -37.0), (3, 0.06, -111.0)), n)
        elif kind == SMPS:
            wave = _harmonics(((1, 1.0, 3.0), (3, 0.05, 0.0), (5, 0.03, 0.0), (7, 0.02, 0.0)), n)
        elif kind == AUDIO:
            wave = _pulses(40, 60, n)
        else:
            wave = _silence
        self._store(ch, wave)

    def _store(self, ch, wave):
        # ``wave(i)`` is the waveform at point i of the cycle. Normalise it to RMS 1 as the
        # kernel interpolates it, then store biased integers (no list of points is built)
        n = self._npts
        power = _mean_square(wave, n)
        scale = _UNIT / math.sqrt(power) if power else 0.0
        base = ch * (n + 1)
        t = self._tables
        for i in range(n):
            t[base + i] = _BIAS + round(wave(i) * scale)
        t[base + n] = t[base]
        stored = _mean_square(lambda i: t[base + i] - _BIAS, n)
        self._table_rms[ch] = math.sqrt(stored) or float(_UNIT)
        self._cum[ch] = None
        self._dirty[ch] = 1

    def _sine(self, phase):
        # Unit-RMS sine at ``phase`` (24-bit), from the voltage reference's table; integers only
        t = self._tables
        bits = self._seg_bits
        i = rms.VREF * (self._npts + 1) + (phase >> bits)
        a = t[i]
        return a - _BIAS + (((t[i + 1] - a) * (phase & ((1 << bits) - 1))) >> bits)

    def fill(self, buf, start, count):
        """Write ``count`` sample instants into ``buf`` from instant ``start`` on."""
        mid = ticks_add(self.samples, count >> 1)  # pyright: ignore[reportArgumentType]
        inc = self._drift_inc
        angle = (self._drift_phase + (count >> 1) * inc) & _PHASE_MASK  # of the offset wander
        self._drift_phase = (self._drift_phase + count * inc) & _PHASE_MASK
        drift = self._drift_q8
        par = self._par
        kinds = self._kind
        dirty = self._dirty
        flicker = self._flicker
        for ch in range(rms.STRIDE):
            kind = kinds[ch]
            if kind == MOTOR:
                opt = self._options[ch]
                age_ms = ticks_diff(mid, self._started[ch]) * rms.SAMPLE_US / 1000
                excess = math.exp(-3 * age_ms / opt.get("inrush_ms", 300))
                if excess > 1e-5 or dirty[ch] or flicker[ch]:
                    inrush = 1 + (opt.get("inrush", 6) - 1) * excess
                    self._scale(ch, self._counts[ch] * inrush * self._flicker_gain(ch, count))
            elif kind == AUDIO:
                level = 0.35 + 0.65 * self._programme()
                self._scale(ch, self._counts[ch] * level * self._flicker_gain(ch, count))
            elif flicker[ch]:
                self._scale(ch, self._counts[ch] * self._flicker_gain(ch, count))
            elif dirty[ch]:
                self._scale(ch, self._counts[ch])
            # mid-rail offset, each channel wandering with its own phase
            phase = (angle + ch * ((1 << _PHASE_BITS) // rms.STRIDE)) & _PHASE_MASK
            wander = drift * self._sine(phase) // _SINE_PEAK
            par[ch * _NPAR + 3] = (rms.ADC_MAX + 1) * 128 + wander
        self._block_phase = self._state[0]
        _synth(buf, start, count, self._tables, par, self._state, self._gauss)  # pyright: ignore[reportArgumentType]
        self.samples = ticks_add(self.samples, count)  # pyright: ignore[reportArgumentType]

    def _flicker_gain(self, ch, count):
        # Modulation of a flickering load at the middle of this fill; 1.0 when steady
        step = self._flicker[ch]
        if not step:
            return 1.0
        at = self._flicker_at[ch]
        self._flicker_at[ch] = math.fmod(at + step * count, 2 * math.pi)
        return 1 + self._options[ch].get("depth", 0.3) * math.sin(at + step * count / 2)

    def _scale(self, ch, counts):
        # RMS in counts -> Q8 counts per table unit, as a 15-bit multiplier and a shift
        self._dirty[ch] = 0
        q8 = counts * 256 / self._table_rms[ch]
        shift = 8
        while shift < 24 and q8 * (1 << (shift + 1)) < 32768:
            shift += 1
        mul = min(int(q8 * (1 << shift) + 0.5), 32767)
        self._par[ch * _NPAR + 1] = mul
        self._par[ch * _NPAR + 2] = shift

    def _programme(self):
        # Loudness of the AUDIO programme, 0..1, a new value every fill
        self._programme_state = (self._programme_state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self._programme_state >> 8) / (1 << 23)

    def exact_sum_sq(self, ch, k0, k1):
        """Integral of the noiseless waveform squared over instants ``k0..k1-1``, counts^2.

        Instants count from the start of the last ``fill``; instant k stands for the interval
        [k - 1/2, k + 1/2) sample periods, so a window of n instants spans n periods. The
        sum of the squared samples of a perfect ADC over the same instants approximates this.
        """
        cum = self._cum[ch]
        n = self._npts
        base = ch * (n + 1)
        if cum is None:
            cum = self._cum[ch] = _cumulative(self._tables, base, n)
        inc = self._state[1]
        seg = 1 << self._seg_bits
        p0 = self._block_phase + (k0 - 0.5) * inc
        p1 = self._block_phase + (k1 - 0.5) * inc
        par = self._par
        scale_now = par[ch * _NPAR + 1] / (1 << (par[ch * _NPAR + 2] + 8))  # counts per unit
        scale = scale_now**2 / inc
        t = self._tables
        return scale * (_energy(cum, t, base, n, seg, p1) - _energy(cum, t, base, n, seg, p0))


def _gauss_table(sigma):
    # Inverse CDF of a normal distribution at the midpoints of 1024 equal-probability bins,
    # biased Q8 counts; scaled so that the table's variance is exactly sigma^2
    n = 1 << _GAUSS_BITS
    z = [0.0] * n
    for i in range(n >> 1):
        p = (i + 0.5) / n
        lo, hi = -6.0, 0.0  # bisection on the CDF
        for _ in range(40):
            x = (lo + hi) / 2
            if 0.5 * (1 + math.erf(x / math.sqrt(2))) < p:
                lo = x
            else:
                hi = x
        z[i] = (lo + hi) / 2
        z[n - 1 - i] = -z[i]
    power = sum(v * v for v in z) / n
    scale = sigma * 256 / math.sqrt(power)
    table = array("H", bytearray(2 * n))
    for i in range(n):
        table[i] = _BIAS + round(z[i] * scale)
    return table


def _harmonics(terms, n):
    # Sum of (order, amplitude, phase in degrees) sines against the voltage phase
    w = 2 * math.pi / n
    terms = tuple((h * w, a, math.radians(p)) for h, a, p in terms)

    def wave(i):
        return sum(a * math.sin(hw * i + p) for hw, a, p in terms)

    return wave


def _pulses(start_deg, width_deg, n):
    # Capacitor-input rectifier: a sin^2 pulse from start_deg, mirrored in the negative half
    def wave(i):
        deg = i * 360 / n
        sign = 1.0
        if deg >= 180:
            deg -= 180
            sign = -1.0
        x = (deg - start_deg) / width_deg
        return sign * math.sin(math.pi * x) ** 2 if 0 <= x <= 1 else 0.0

    return wave


def _dimmer(angle, rise_us, f, n):
    # Leading-edge phase cut: conducts from the firing angle to the current zero; the choke
    # makes the current approach the lamp's sine exponentially (tau = rise time / 2.197)
    tau = rise_us * 1e-6 / 2.197 * 2 * math.pi * f  # radians
    alpha = math.radians(angle)

    def wave(i):
        theta = 2 * math.pi * i / n
        lag = theta % math.pi - alpha
        if lag < 0:
            return 0.0
        return math.sin(theta) * (1 - math.exp(-lag / tau) if tau > 0 else 1.0)

    return wave


def _silence(i):
    return 0.0


def _mean_square(wave, n):
    # Mean square of the closed piecewise-linear curve through the n points of one cycle
    total = 0.0
    first = a = wave(0)
    for i in range(1, n + 1):
        b = wave(i) if i < n else first
        total += a * a + a * b + b * b
        a = b
    return total / (3 * n)


def _cumulative(tables, base, n):
    # cum[j] = integral of the squared interpolated table over segments 0..j-1 (segment = 1)
    cum = array("d", bytearray(8 * (n + 1)))
    total = 0.0
    for j in range(n):
        a = tables[base + j] - _BIAS
        b = tables[base + j + 1] - _BIAS
        total += (a * a + a * b + b * b) / 3
        cum[j + 1] = total
    return cum


def _energy(cum, tables, base, n, seg, phase):
    # Integral of the squared table from phase 0 to ``phase`` (unwrapped), phase units
    cycles = math.floor(phase / (_PHASE_MASK + 1))
    rest = phase - cycles * (_PHASE_MASK + 1)
    j = min(int(rest // seg), n - 1)
    s = rest / seg - j
    a = tables[base + j] - _BIAS
    d = tables[base + j + 1] - _BIAS - a
    partial = a * a * s + a * d * s * s + d * d * s * s * s / 3
    return (cycles * cum[n] + cum[j] + partial) * seg


@micropython.viper
def _synth(
    buf: ptr16, start: int, count: int, tables: ptr16, par: ptr32, state: ptr32, gauss: ptr16
):
    # One channel at a time: phase -> table (linear interpolation) -> scale -> offset,
    # triangular or Gaussian noise, round, clip. Every product stays below 2^31.
    phase0 = state[0]
    inc = state[1]
    noise = state[2]
    ishift = state[3]  # phase -> table index
    fshift = state[4]  # phase -> 8-bit interpolation fraction
    gaussian = state[5]
    c = 0
    while c < _STRIDE:
        base = par[c * _NPAR]
        amp = par[c * _NPAR + 1]
        shift = par[c * _NPAR + 2]
        half = 1 << (shift - 1)
        offset = par[c * _NPAR + 3] + 128  # Q8 counts, + 1/2 for rounding
        phase = phase0
        p = start * _STRIDE + c
        end = p + count * _STRIDE
        while p < end:
            i = base + (phase >> ishift)
            a = int(tables[i]) - _BIAS
            b = int(tables[i + 1]) - _BIAS
            v = a + (((b - a) * ((phase >> fshift) & 255)) >> 8)
            noise = (noise * 1664525 + 1013904223) & 0x3FFFFFFF
            x = offset + ((v * amp + half) >> shift)
            if gaussian:  # top 10 bits of the LCG pick a point of the inverse CDF
                x = (x + int(gauss[(noise >> 20) & _GAUSS_MASK]) - _BIAS) >> 8
            else:  # two uniform 0..255/256 LSB: +-1 LSB triangular
                x = (x + ((noise >> 22) & 255) + ((noise >> 14) & 255) - 255) >> 8
            if x < 0:
                x = 0
            elif x > _ADC_MAX:
                x = _ADC_MAX
            buf[p] = x
            phase = (phase + inc) & _PHASE_MASK
            p += _STRIDE
        c += 1
    state[0] = (phase0 + count * inc) & _PHASE_MASK
    state[2] = noise
