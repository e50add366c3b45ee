"""Load kinds' waveforms as the firmware synthesises them (``firmware/loadsim.py``) and
their spectra: RMS fraction, power factor, harmonics and crest factor of each kind."""

from __future__ import annotations

import cmath
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

# The firmware's load kinds (firmware/loadsim.py KINDS; cross-checked by the tests).
KINDS = ("off", "resistive", "led", "dimmer", "motor", "smps", "audio")


# Firmware defaults for the options (firmware/loadsim.py set_load).
DIMMER_ANGLE = 90.0
DIMMER_RISE_US = 200.0
MOTOR_INRUSH = 6.0
MOTOR_INRUSH_MS = 300.0
# AUDIO loudness is uniform in 0.35..1.0 per block: RMS = sqrt(E[(0.35 + 0.65 u)^2]).
AUDIO_RMS_FRACTION = math.sqrt(0.35**2 + 0.35 * 0.65 + 0.65**2 / 3)


_TABLE = 1024  # points per mains cycle, as loadsim tabulates
_MAX_ORDER = 39  # harmonics handed to the meter model
_MIN_FRACTION = 0.002


# ---------------------------------------------------------------------- waveform physics


@dataclass(frozen=True)
class Shape:
    """Spectrum of one load kind's waveform (as the firmware synthesises it).

    ``rms_fraction``: RMS of the waveform relative to the ``amps`` it is asked for (1 for
    kinds whose ``amps`` is already the RMS; the phase cut for dimmers).  ``pf``: cos of the
    fundamental's angle to the voltage, ``leading`` its sign; ``harmonics``: amplitude
    fractions of the fundamental by order; ``crest``: peak / RMS.
    """

    rms_fraction: float
    pf: float
    leading: bool
    harmonics: tuple[tuple[int, float], ...]
    crest: float

    @property
    def h3(self) -> float:
        return dict(self.harmonics).get(3, 0.0)


def _harmonic_wave(terms: Sequence[tuple[int, float, float]]) -> list[float]:
    w = 2 * math.pi / _TABLE
    return [
        sum(a * math.sin(h * i * w + math.radians(p)) for h, a, p in terms) for i in range(_TABLE)
    ]


def _pulse_wave(start_deg: float, width_deg: float) -> list[float]:
    wave = [0.0] * _TABLE
    for i in range(_TABLE):
        deg = i * 360 / _TABLE
        sign = 1.0
        if deg >= 180:
            deg -= 180
            sign = -1.0
        x = (deg - start_deg) / width_deg
        if 0 <= x <= 1:
            wave[i] = sign * math.sin(math.pi * x) ** 2
    return wave


def _dimmer_wave(angle: float, rise_us: float, mains_hz: float) -> list[float]:
    wave = [0.0] * _TABLE
    tau = rise_us * 1e-6 / 2.197 * 2 * math.pi * mains_hz
    alpha = math.radians(angle)
    for i in range(_TABLE):
        theta = 2 * math.pi * i / _TABLE
        lag = theta % math.pi - alpha
        if lag >= 0:
            wave[i] = math.sin(theta) * (1 - math.exp(-lag / tau) if tau > 0 else 1.0)
    return wave


def kind_wave(
    kind: str,
    *,
    angle: float = DIMMER_ANGLE,
    rise_us: float = DIMMER_RISE_US,
    mains_hz: float = 50.0,
) -> list[float]:
    """One mains cycle of ``kind``'s unscaled waveform against the voltage phase (0 = rising
    zero crossing), the same formulas as ``firmware/loadsim.py``."""
    if kind == "resistive":
        return _harmonic_wave(((1, 1.0, 0.0),))
    if kind == "led":
        return _pulse_wave(52, 40)
    if kind == "dimmer":
        return _dimmer_wave(angle, rise_us, mains_hz)
    if kind == "motor":
        return _harmonic_wave(((1, 1.0, -37.0), (3, 0.06, -111.0)))
    if kind == "smps":
        return _harmonic_wave(((1, 1.0, 3.0), (3, 0.05, 0.0), (5, 0.03, 0.0), (7, 0.02, 0.0)))
    if kind == "audio":
        return _pulse_wave(40, 60)
    return [0.0] * _TABLE


def spectrum_of(wave: Sequence[float]) -> dict[int, complex]:
    """Phasors by harmonic order: component h is |X| sin(h theta + arg X)."""
    n = len(wave)
    sines = _sine_table(n)
    quarter = n // 4  # cos(x) = sin(x + pi/2); n is a multiple of 4
    points = [(i, x) for i, x in enumerate(wave) if x]
    result: dict[int, complex] = {}
    for order in range(1, _MAX_ORDER + 1):
        a = sum(x * sines[order * i % n] for i, x in points)
        b = sum(x * sines[(order * i + quarter) % n] for i, x in points)
        result[order] = complex(2 * a / n, 2 * b / n)
    return result


@functools.lru_cache(maxsize=4)
def _sine_table(n: int) -> tuple[float, ...]:
    if n % 4:
        raise ValueError("the waveform needs a multiple of 4 points per cycle")
    return tuple(math.sin(2 * math.pi * i / n) for i in range(n))


@functools.lru_cache(maxsize=512)
def kind_shape(
    kind: str,
    angle: float = DIMMER_ANGLE,
    rise_us: float = DIMMER_RISE_US,
    mains_hz: float = 50.0,
) -> Shape:
    """The ``Shape`` of a load kind (cached: dimmer angles come from a few levels)."""
    if kind == "off":
        return Shape(0.0, 1.0, False, (), 0.0)
    wave = kind_wave(kind, angle=angle, rise_us=rise_us, mains_hz=mains_hz)
    mean_square = sum(x * x for x in wave) / len(wave)
    if mean_square <= 1e-12:
        return Shape(0.0, 1.0, False, (), 0.0)
    rms = math.sqrt(mean_square)
    fraction = rms / math.sqrt(0.5) if kind == "dimmer" else 1.0
    spectrum = spectrum_of(wave)
    fundamental = spectrum[1]
    phi = cmath.phase(fundamental)
    harmonics = tuple(
        (order, round(abs(phasor) / abs(fundamental), 4))
        for order, phasor in spectrum.items()
        if order > 1 and abs(phasor) / abs(fundamental) >= _MIN_FRACTION
    )
    peak = max(abs(x) for x in wave)
    return Shape(
        rms_fraction=fraction,
        pf=max(0.01, min(1.0, math.cos(phi))),
        leading=phi > 1e-6,
        harmonics=harmonics,
        crest=peak / rms,
    )
