"""[frontpanel]: the Pi's RUN / DATA TX LEDs and RESET button, checked at load like every
other section (a wrong pin is found when the file is read, not when the LED stays dark)."""

from __future__ import annotations

from host.config.sections import FrontPanelConfig
from host.config.table import Invalid, Table, shown

_KEYS = (
    "enabled",
    "chip",
    "run_line",
    "tx_line",
    "reset_line",
    "run_active_low",
    "tx_active_low",
    "reset_active_low",
    "heartbeat_s",
    "tx_pulse_ms",
    "debounce_ms",
    "stall_after_s",
)
MAX_LINE = 1023  # offsets on one chip (the Pi's header chip has 54 or 58 lines)


def _check_chip(text: str) -> str:
    if not text.startswith("/") or any(c.isspace() for c in text):
        raise ValueError(
            'expected the path of a GPIO chip device such as "/dev/gpiochip0" (see '
            f"`gpiodetect`), got {shown(text)}"
        )
    return text


def read_frontpanel(raw: object) -> FrontPanelConfig:
    t = Table(raw, "frontpanel", _KEYS)
    defaults = FrontPanelConfig()
    lines = {
        key: t.integer(key, getattr(defaults, key), 0, MAX_LINE)
        for key in ("run_line", "tx_line", "reset_line")
    }
    seen: dict[int, str] = {}
    for key, offset in lines.items():
        if offset in seen:
            raise Invalid(
                f"frontpanel.{key}",
                f"line {offset} is already frontpanel.{seen[offset]}: the RUN LED, the DATA TX "
                "LED and the RESET button each need a line of their own",
            )
        seen[offset] = key
    heartbeat_s = t.number("heartbeat_s", defaults.heartbeat_s, 0.2, 10.0)
    stall_after_s = t.number("stall_after_s", defaults.stall_after_s, 2.0, 600.0)
    if stall_after_s < 2 * heartbeat_s:
        raise Invalid(
            "frontpanel.stall_after_s",
            f"{stall_after_s:g} s must be at least two heartbeats "
            f"(2 x frontpanel.heartbeat_s = {2 * heartbeat_s:g} s)",
        )
    return FrontPanelConfig(
        enabled=t.boolean("enabled", defaults.enabled),
        chip=t.text("chip", defaults.chip, _check_chip),
        run_line=lines["run_line"],
        tx_line=lines["tx_line"],
        reset_line=lines["reset_line"],
        run_active_low=t.boolean("run_active_low", defaults.run_active_low),
        tx_active_low=t.boolean("tx_active_low", defaults.tx_active_low),
        reset_active_low=t.boolean("reset_active_low", defaults.reset_active_low),
        heartbeat_s=heartbeat_s,
        tx_pulse_ms=t.integer("tx_pulse_ms", defaults.tx_pulse_ms, 5, 1000),
        debounce_ms=t.integer("debounce_ms", defaults.debounce_ms, 1, 1000),
        stall_after_s=stall_after_s,
    )
