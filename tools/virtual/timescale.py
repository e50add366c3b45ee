"""Run a virtual PDU in slow motion, so emulated RP2040s keep their TDMA slots.

An emulated RP2040 runs the group-board firmware at 0.2-0.35 x real time (rp2040js on this
kind of machine: every Cortex-M0 instruction and every PIO cycle of the ADC program is
interpreted). The RS-485 bus is time-division multiplexed: each board answers in its slot,
timed from the end of the master's SYNC; a board that runs slower than the line cannot hit
its slot. Rather than loosen the bus timing for the emulator (the aggregator must not know
it is talking to one), the whole virtual PDU runs on one dilated clock: libfaketime
(Debian ``faketime``) makes CLOCK_MONOTONIC, CLOCK_REALTIME, sleeps and poll/epoll timeouts
of every process in the tree run at ``scale`` x real time, sharing one start instant. The
aggregator, the virtual bus (its byte timing), the unix-port boards and the meter then live
in the same slowed time as the paced emulated chips, and every timing relation holds
exactly as at full speed. What a person sees in the browser is slow motion; the web page's
own clock (the browser runs outside) is not slowed.

``faketime_command(argv, scale)`` wraps a command; ``active_scale()`` says whether (and how
much) this process is dilated.
"""

from __future__ import annotations

import os
import shutil

ENV = "SMARTPDU_TIME_SCALE"
DEFAULT_SCALE = 0.2


class TimeScaleError(Exception):
    """Slow motion was asked for but cannot be had here."""


def faketime_command(argv: list[str], scale: float) -> list[str]:
    """``argv`` run under libfaketime at ``scale`` x real time (0 < scale <= 1)."""
    if not 0 < scale <= 1:
        raise TimeScaleError(f"time scale must be in (0, 1], not {scale}")
    faketime = shutil.which("faketime")
    if faketime is None:
        raise TimeScaleError(
            "the faketime command is missing: `make setup` installs Debian faketime"
        )
    return [faketime, "-f", f"+0 x{scale:g}", *argv]


def scaled_env(scale: float, env: dict[str, str] | None = None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    out[ENV] = f"{scale:g}"
    return out


def active_scale() -> float:
    """The scale this process runs at under faketime (1.0 when not dilated)."""
    value = os.environ.get(ENV)
    if not value or "FAKETIME" not in os.environ:
        return 1.0
    try:
        return float(value)
    except ValueError:
        return 1.0
