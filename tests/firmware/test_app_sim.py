"""The whole group-board firmware on the MicroPython unix port (sim board): a scripted load
drives a channel through every state, read back from the LEDs and the LOAD CURRENT display
the way a person reads the front panel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tools.virtual.vboard import VirtualBoard, led_colour_name


async def wait_for(board: VirtualBoard, predicate, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate(board.state):
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}; panel: {board.state.raw}; "
                        f"log: {board.log[-5:]}")  # fmt: skip
        board.state_changed.clear()
        with __import__("contextlib").suppress(TimeoutError):
            await asyncio.wait_for(board.state_changed.wait(), 0.2)


async def sample_led(board: VirtualBoard, led: int, seconds: float) -> tuple[set[str], int]:
    """Colours seen on one LED and the number of on/off transitions over ``seconds``."""
    colours: set[str] = set()
    transitions = 0
    last = None
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        colour = led_colour_name(board.state.leds[led])
        colours.add(colour)
        on = colour != "off"
        if last is not None and on != last:
            transitions += 1
        last = on
        await asyncio.sleep(0.01)
    return colours, transitions


async def test_channel_walks_through_every_state_on_the_front_panel(tmp_path: Path) -> None:
    async with VirtualBoard("A", bus_socket=None, workdir=tmp_path, group="C") as board:
        await wait_for(board, lambda s: s.display == " -C-", 5, "idle display with group")
        assert led_colour_name(board.state.leds[2]) == "off"  # OFF: no load, no light

        await board.set_load(3, "resistive", 7.3)
        await wait_for(board, lambda s: led_colour_name(s.leds[2]) == "green", 3, "green")

        await board.press(3)
        await wait_for(board, lambda s: led_colour_name(s.leds[2]) == "blue", 2, "blue")
        await wait_for(board, lambda s: s.display.strip() in ("7.3", "7.2", "7.4"), 2, "7.3 A")

        await asyncio.sleep(0.3)  # the first press (held 120 ms) is over
        await board.press(3)  # pressing again deselects
        await wait_for(board, lambda s: led_colour_name(s.leds[2]) == "green", 2, "deselect")

        await board.set_load(3, "resistive", 18.0)  # 112 %: slight overload
        await asyncio.sleep(1.5)
        colours, transitions = await sample_led(board, 2, 2.0)
        assert colours == {"red", "off"}
        assert 3 <= transitions <= 5  # ~1 Hz flash: 4 transitions in 2 s

        await board.set_load(3, "resistive", 100.0)  # 625 %: serious within the curve's tmin
        await asyncio.sleep(0.5)
        colours, transitions = await sample_led(board, 2, 1.0)
        assert colours == {"red", "off"}
        assert 6 <= transitions <= 9  # ~4 Hz flash: 8 transitions in 1 s

        await board.set_load(3, "off", 0)  # collapse right after the overload: RCBO tripped
        await wait_for(board, lambda s: led_colour_name(s.leds[2]) == "dim-red", 2, "tripped")
        assert led_colour_name(board.state.leds[0]) == "off"
