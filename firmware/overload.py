"""Overload classifier: each output's current against its breaker's delay curve.

Each main output sits behind a 16 A magnetic-hydraulic RCBO. Its delay curve gives, for a
current in percent of the rating, the band of times within which it trips (``curve``: rows
``(percent, tmin_ms, tmax_ms)``, ascending). The default is the Sensata/Airpax "62 medium"
delay: it holds 100 % for ever, may trip anywhere between 100 % and the first row (125 %:
the must-trip current), and at and above it trips between tmin and tmax. Between rows the
times are interpolated on log-log scales; above the last row they stay at its values (the
instantaneous magnetic trip).

Breaker model
-------------
The hydraulic delay is a core moving through fluid against a spring, so it remembers past
overloads. Two fractions per channel stand for how far it has moved, 1.0 = tripped:
``F_min`` adds dt / tmin(I) and ``F_typ`` adds dt / t_typ(I) every mains cycle the current is
at or above the must-trip current (t_typ is the logarithmic middle of the band). Between
the rating and the must-trip current they hold; at or below the rating they fall back at
1.0 per ``reset_ms``. The estimated time to trip, (1 - F_typ) * t_typ(I), is reported while
the current is at or above the must-trip current (0 once the typical time has passed).
The curve is tabulated when configured, in current steps of 1.1 % (64 per octave), so
``update`` only looks times up.

States (their integer codes are the wire format)
------------------------------------------------
- ``OFF`` (0): no load. Becomes ``OK`` when at least ``on_ma`` (100 mA) flows for 50 ms
  (three cycles); ``OK`` becomes ``OFF`` below ``off_ma`` (50 mA) for 200 ms.
- ``OK`` (1): a load within the rating.
- ``SLIGHT`` (2): above the rating for ``slight_ms`` (1 s), but not serious: the current is
  either in the may-trip zone (the breaker may hold for ever) or at or above the must-trip
  current for less time than the curve's minimum trip time (the breaker cannot have tripped
  yet). Back to ``OK`` below 97 % of the rating for ``hold_ms`` (1 s).
- ``SERIOUS`` (3): at or above the must-trip current for longer than the curve's minimum
  trip time at that current (``F_min`` >= 1: from now on the breaker may trip at any moment,
  and it will within tmax) and for at least 50 ms. An inrush shorter than the curve allows
  therefore raises no alarm; the 50 ms are there because a per-cycle RMS cannot resolve a
  pulse shorter than a cycle against the 10-20 ms rows of the curve. Back to ``SLIGHT`` (or
  ``OK``) below 95 % of the must-trip current for ``hold_ms``.
- ``TRIPPED`` (4): the current fell below ``off_ma`` within one cycle while ``SLIGHT`` or
  ``SERIOUS``: the RCBO probably tripped (or the load was switched off at that moment). The
  breaker model is reset; ``OK`` again once current flows (the breaker was reset).

Every change needs its condition to hold for a time (hysteresis in time) and the way back
needs a lower current (hysteresis in level); only the two alarms that cannot wait (a trip,
a serious overload the curve no longer tolerates) act within one cycle.

Use: ``update(period_us, current_ua)`` once per mains cycle with the per-cycle RMS of every
channel (``RmsEngine.cycle_ua``). Results are in ``state`` (bytearray) and
``time_to_trip_ds`` (array 'H', 0.1 s; ``NO_TRIP`` when no trip is predicted). Integer
maths only and nothing allocated per cycle.
"""

import math
from array import array

from micropython import const

OFF = const(0)
OK = const(1)
SLIGHT = const(2)
SERIOUS = const(3)
TRIPPED = const(4)
STATE_NAMES = ("off", "ok", "slight", "serious", "tripped")
NO_TRIP = const(0xFFFF)

# Sensata/Airpax 62 medium delay: percent of rating, min and max trip time in ms
DEFAULT_CURVE = (
    (125, 10000, 120000),
    (150, 6000, 60000),
    (200, 2000, 20000),
    (400, 200, 3000),
    (600, 20, 2000),
    (1000, 10, 250),
)

_ONE = const(1 << 24)  # breaker fraction 1.0
_Q24_PER_MS = const(16777)  # 2^24 / 1000: dt_us * _Q24_PER_MS // t_ms is dt / t in Q24
_MAX_DT_US = const(25000)  # longest cycle counted (40 Hz)
_BINS_PER_OCTAVE = const(64)  # current steps of 1.1 % in the tabulated curve
_MAX_T_MS = const(3600000)
_ON_US = const(50000)  # OFF/TRIPPED -> OK: three cycles
_OFF_US = const(200000)  # OK -> OFF
_SERIOUS_MIN_US = const(50000)  # at least three cycles at or above the must-trip current
_TIMER_CAP = const(1 << 29)
_NONE = const(255)  # no transition pending


class CurveError(ValueError):
    """The delay curve or the rating cannot be used."""


class OverloadClassifier:
    """Per-channel overload state from the per-cycle RMS current, as described above."""

    def __init__(
        self,
        nchan=12,
        rating_ma=16000,
        curve=DEFAULT_CURVE,
        on_ma=100,
        off_ma=50,
        slight_ms=1000,
        hold_ms=1000,
        reset_ms=10000,
    ):
        if not 0 < off_ma < on_ma < rating_ma:
            raise CurveError("thresholds")
        self.nchan = nchan
        self.state = bytearray(nchan)
        self.time_to_trip_ds = array("H", [NO_TRIP] * nchan)
        self._f_min = array("i", [0] * nchan)
        self._f_typ = array("i", [0] * nchan)
        self._above_us = array("i", [0] * nchan)  # time continuously at/above must-trip
        self._timer = array("i", [0] * nchan)  # time the pending transition has held
        self._pending = bytearray([_NONE] * nchan)
        self._on_ua = on_ma * 1000
        self._off_ua = off_ma * 1000
        self._slight_us = slight_ms * 1000
        self._hold_us = hold_ms * 1000
        self._reset_ms = reset_ms
        self.configure(rating_ma, curve)

    def configure(self, rating_ma, curve):
        """Tabulate ``curve`` (rows (percent, tmin_ms, tmax_ms)) for a rating in mA."""
        rows = _checked(curve)
        top = rows[-1][0]
        if rating_ma * 10 * top >= 1 << 30:  # edges in uA stay small ints on the chip
            raise CurveError("rating")
        self.rating_ma = rating_ma
        self.curve = rows
        first = rows[0][0]
        self._rating_ua = rating_ma * 1000
        self._rating_back_ua = rating_ma * 970  # 97 %
        self._must_ua = rating_ma * 10 * first
        self._must_back_ua = rating_ma * 10 * first * 95 // 100
        # Bin k covers [edge[k], edge[k + 1]); the last bin is everything above the top row.
        nbins = math.ceil(_BINS_PER_OCTAVE * math.log(top / first) / math.log(2))
        self._edge_ua = array("i", [0] * (nbins + 1))
        self._tmin_ms = array("i", [0] * (nbins + 1))
        self._ttyp_ms = array("i", [0] * (nbins + 1))
        for k in range(nbins + 1):
            if k < nbins:
                percent = first * 2 ** (k / _BINS_PER_OCTAVE)
                centre = min(first * 2 ** ((k + 0.5) / _BINS_PER_OCTAVE), top)
            else:
                percent = centre = top
            tmin, tmax = _interpolate(rows, centre)
            self._edge_ua[k] = int(rating_ma * 10 * percent + 0.5)
            self._tmin_ms[k] = max(int(tmin + 0.5), 1)
            self._ttyp_ms[k] = max(int(math.sqrt(tmin * tmax) + 0.5), 1)

    def trip_times_ms(self, current_ua):
        """(tmin, t_typ) of the tabulated curve at a current, or None below must-trip."""
        if current_ua < self._must_ua:
            return None
        k = self._bin(current_ua)
        return self._tmin_ms[k], self._ttyp_ms[k]

    def _bin(self, current_ua):
        # Largest k with edge[k] <= current (current >= edge[0])
        edge = self._edge_ua
        lo = 0
        hi = len(edge) - 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if edge[mid] <= current_ua:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def update(self, period_us, current_ua):
        """Advance every channel by one mains cycle of ``period_us`` at ``current_ua[ch]``."""
        dt = min(period_us, _MAX_DT_US)
        state = self.state
        ttt = self.time_to_trip_ds
        f_min = self._f_min
        f_typ = self._f_typ
        above = self._above_us
        must = self._must_ua
        rating = self._rating_ua
        cool = dt * _Q24_PER_MS // self._reset_ms
        for ch in range(self.nchan):
            current = current_ua[ch]
            st = state[ch]
            # Breaker model
            if current >= must:
                k = self._bin(current)
                fm = min(f_min[ch] + dt * _Q24_PER_MS // self._tmin_ms[k], 2 * _ONE)
                ft = min(f_typ[ch] + dt * _Q24_PER_MS // self._ttyp_ms[k], 2 * _ONE)
                f_min[ch] = fm
                f_typ[ch] = ft
                above[ch] = min(above[ch] + dt, _TIMER_CAP)
                left = _ONE - ft if ft < _ONE else 0
                ttt[ch] = ((left >> 10) * (self._ttyp_ms[k] // 100)) >> 14
            else:
                above[ch] = 0
                ttt[ch] = NO_TRIP
                if current <= rating and f_min[ch]:  # f_min >= f_typ: both cool
                    f_min[ch] = max(f_min[ch] - cool, 0)
                    f_typ[ch] = max(f_typ[ch] - cool, 0)
            # State machine: target of the transition this cycle's current points to
            if st == OFF or st == TRIPPED:
                target = OK if current >= self._on_ua else _NONE
                need = _ON_US
            elif current < self._off_ua:
                if st != OK:  # collapsed straight out of an overload
                    self._enter(ch, TRIPPED)
                    continue
                target = OFF
                need = _OFF_US
            elif current >= must and f_min[ch] >= _ONE and above[ch] >= _SERIOUS_MIN_US:
                if st != SERIOUS:
                    self._enter(ch, SERIOUS)
                    continue
                target = _NONE
                need = 0
            elif st == OK:
                target = SLIGHT if current > rating else _NONE
                need = self._slight_us
            elif st == SLIGHT:
                target = OK if current < self._rating_back_ua else _NONE
                need = self._hold_us
            elif current < self._must_back_ua:  # SERIOUS, well under must-trip
                target = SLIGHT if current >= self._rating_back_ua else OK
                need = self._hold_us
            else:
                target = _NONE
                need = 0
            if target != self._pending[ch]:
                self._pending[ch] = target
                self._timer[ch] = 0
            if target != _NONE:
                held = min(self._timer[ch] + dt, _TIMER_CAP)
                self._timer[ch] = held
                if held >= need:
                    self._enter(ch, target)

    def _enter(self, ch, new):
        self.state[ch] = new
        self._pending[ch] = _NONE
        self._timer[ch] = 0
        if new == TRIPPED or new == OFF:
            self._f_min[ch] = 0
            self._f_typ[ch] = 0
            self._above_us[ch] = 0
            self.time_to_trip_ds[ch] = NO_TRIP

    def fraction_pct(self, ch):
        """How far the breaker model has moved towards a typical trip, percent."""
        return ((self._f_typ[ch] >> 10) * 100) >> 14


def _checked(curve):
    rows = [tuple(int(v) for v in row) for row in curve]
    if not rows:
        raise CurveError("empty curve")
    last = None
    for percent, tmin, tmax in rows:
        if percent <= 100 or not 0 < tmin <= tmax <= _MAX_T_MS:
            raise CurveError("row")
        if last and (percent <= last[0] or tmin > last[1] or tmax > last[2]):
            raise CurveError("rows must rise in current and fall in time")
        last = (percent, tmin, tmax)
    return rows


def _interpolate(rows, percent):
    # (tmin, tmax) at ``percent`` by log-log interpolation between rows, flat beyond them
    if percent <= rows[0][0]:
        return rows[0][1], rows[0][2]
    for i in range(1, len(rows)):
        p1, a1, b1 = rows[i]
        if percent <= p1:
            p0, a0, b0 = rows[i - 1]
            x = math.log(percent / p0) / math.log(p1 / p0)
            return a0 * (a1 / a0) ** x, b0 * (b1 / b0) ** x
    return rows[-1][1], rows[-1][2]
