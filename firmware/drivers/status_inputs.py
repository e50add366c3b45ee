"""Mains status node inputs: breaker contacts, Emergency Stop, loss of Neutral, temperature.

Four dry contacts, each through an opto-coupler to a GPIO with pull-up (active low), are
debounced by :class:`StatusInputs` (the same debouncer as the buttons) and reported as
level changes with the ``ticks_ms`` time at which each change began, so the application can
tell which one tripped the main breaker (R6: E-stop or loss of Neutral seen before the
breaker opened, or the breaker's own alarm contact alone = overload):

=========  ================================================  ===========================
index      input                                             active means
=========  ================================================  ===========================
0 BREAKER  main breaker auxiliary contact (OF)                breaker closed (ON)
1 ALARM    breaker alarm / trip-indication contact (SD)       breaker tripped
2 ESTOP    Emergency Stop contact                            E-stop pressed
3 NEUTRAL  loss-of-Neutral protection relay                  Neutral lost (relay operated)
=========  ================================================  ===========================

Events are ``ACTIVE | index`` / ``INACTIVE | index`` (see :mod:`firmware.drivers.buttons`).

Temperature: :class:`Rp2Temperature` reads the RP2040's internal sensor on ADC channel 4
with the datasheet formula T = 27 - (V - 0.706) / 0.001721 (V = code * 3.3 / 4096),
in integer maths, as tenths of a degree C. :class:`SimTemperature` is its unix counterpart.
"""

from micropython import const

from firmware.drivers.buttons import ACTIVE, INACTIVE, DebouncedInputs

BREAKER = const(0)
ALARM = const(1)
ESTOP = const(2)
NEUTRAL = const(3)
NAMES = ("breaker", "alarm", "estop", "neutral")
__all__ = ["ACTIVE", "ALARM", "BREAKER", "ESTOP", "INACTIVE", "NAMES", "NEUTRAL"]

_UV_PER_CODE_X100 = const(80586)  # 3.3 V / 4095 codes = 805.86 uV
_V27_UV = const(706_000)  # sensor voltage at 27 C
_SLOPE_UV_PER_C = const(1721)


class StatusInputs(DebouncedInputs):
    """The four status contacts (pins in the order of the table above)."""

    def __init__(self, pins, *, active_low=True, debounce_ms=30, queue=16):
        if len(pins) != 4:
            raise ValueError("4 status inputs")
        super().__init__(pins, active_low=active_low, debounce_ms=debounce_ms, queue=queue)

    def breaker_closed(self):
        return self.active(BREAKER)

    def tripped(self):
        return self.active(ALARM)

    def estop(self):
        return self.active(ESTOP)

    def neutral_lost(self):
        return self.active(NEUTRAL)


def temperature_c10(code12):
    """Tenths of a degree C for a 12-bit reading of the RP2040 temperature sensor."""
    uv = code12 * _UV_PER_CODE_X100 // 100
    delta = (_V27_UV - uv) * 10  # tenths of a degree times the slope
    if delta >= 0:
        return 270 + (delta + _SLOPE_UV_PER_C // 2) // _SLOPE_UV_PER_C
    return 270 - (-delta + _SLOPE_UV_PER_C // 2) // _SLOPE_UV_PER_C


class Rp2Temperature:
    """RP2040 internal temperature sensor (ADC input 4)."""

    def __init__(self, adc=None):
        if adc is None:
            from machine import ADC

            adc = ADC(4)
        self._adc = adc

    def read_c10(self):
        """Temperature in tenths of a degree C (averages 8 readings)."""
        total = 0
        for _ in range(8):
            total += self._adc.read_u16() >> 4
        return temperature_c10((total + 4) >> 3)


class SimTemperature:
    """Settable temperature for the sim board (tenths of a degree C)."""

    def __init__(self, c10=250):
        self.c10 = c10

    def read_c10(self):
        return self.c10
