"""The production image on an emulated RP2040 with the real boards/pico_mcp3208 drivers.

The front panel is read as the chip drives it: LED colours decoded from the WS2812 pin's pulse
train, digits from the TM1637's CLK/DIO, buttons pulled low at their GPIOs, currents from the
MCP3208 models answering the PIO program's conversions with codes of the sim load model.
Times are simulated (the emulator runs unpaced here), so flash rates are exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.rp2support import need_emulator
from tools.rp2emu import PRODUCTION_IMAGE, EmulatedBoard, Event
from tools.rp2emu.vboard import Rp2VirtualBoard
from tools.virtual.vboard import led_colour_name

pytestmark = pytest.mark.slow


def led(emu: EmulatedBoard, index: int) -> str:
    leds = emu.leds()
    return led_colour_name(leds[index]) if leds else "none"


def transitions(frames: list[Event], index: int, start: float, end: float) -> tuple[set[str], int]:
    """Colours of LED ``index`` and its on/off changes between two simulated times."""
    colours: set[str] = set()
    changes = 0
    last: bool | None = None
    for frame in frames:
        if not start <= frame.t <= end:
            continue
        colour = led_colour_name(tuple(frame.data["leds"][index]))  # type: ignore[arg-type]
        colours.add(colour)
        on = colour != "off"
        if last is not None and on != last:
            changes += 1
        last = on
    return colours, changes


async def start_board(tmp_path: Path, group: str = "C") -> Rp2VirtualBoard:
    need_emulator()
    board = Rp2VirtualBoard(
        "board-" + group, bus_socket=None, workdir=tmp_path, group=group, pace=0
    )
    await board.start(timeout=240)
    return board


async def test_production_image_walks_every_state_on_the_decoded_front_panel(
    tmp_path: Path,
) -> None:
    board = await start_board(tmp_path)
    emu = board.emu
    assert emu is not None
    try:
        # Booted from the production image (frozen firmware), flashed with its config only.
        assert board.info["board"] == "pico_mcp3208" and board.info["group"] == "C"
        assert any(line.startswith("smartPDU-INFO ") for line in emu.console)
        await emu.wait_for(lambda: emu.display() == " -C-", 120)
        await emu.run_for(1.0)
        assert led(emu, 2) == "off"  # OFF: no load, no light

        await board.set_load(3, "resistive", 7.3)
        await emu.wait_for(lambda: led(emu, 2) == "green", 120)

        await board.press(3, hold_ms=120)  # GP5 pulled low for 120 simulated ms
        await emu.wait_for(lambda: led(emu, 2) == "blue", 120)
        await emu.wait_for(lambda: emu.display().strip() in ("7.3", "7.2", "7.4"), 120)
        await emu.run_for(0.3)
        await board.press(3, hold_ms=120)  # pressing again deselects
        await emu.wait_for(lambda: led(emu, 2) == "green", 120)

        await board.set_load(3, "resistive", 18.0)  # 112 %: slight overload, ~1 Hz
        await emu.run_for(1.5)
        t0 = emu.sim_time
        await emu.run_for(2.0)
        colours, changes = transitions(emu.of_kind("leds"), 2, t0, t0 + 2.0)
        assert colours == {"red", "off"}
        assert 3 <= changes <= 5, changes

        await board.set_load(3, "resistive", 100.0)  # 625 %: serious, ~4 Hz
        await emu.run_for(0.5)
        t0 = emu.sim_time
        await emu.run_for(1.0)
        colours, changes = transitions(emu.of_kind("leds"), 2, t0, t0 + 1.0)
        assert colours == {"red", "off"}
        assert 6 <= changes <= 9, changes

        await board.set_load(3, "off", 0)  # collapse right after the overload: tripped
        await emu.wait_for(lambda: led(emu, 2) == "dim-red", 120)
        assert led(emu, 0) == "off"

        stats = await emu.stats()
        assert stats["adc"]["errors"] == 0 and stats["codes"]["starved"] == 0
        assert stats["leds"]["malformedBits"] == 0 and stats["display"]["unknown"] == 0
        assert stats["resets"] == 0
    finally:
        await board.stop()


async def test_a_stalled_task_starves_the_rp2040_watchdog_which_resets_the_chip(
    tmp_path: Path,
) -> None:
    board = await start_board(tmp_path, "D")
    emu = board.emu
    assert emu is not None
    try:
        await emu.wait_for(lambda: emu.display() == " -D-", 120)
        seen = len(emu.console)
        await board.console("fault sample stall")
        await emu.wait_for(lambda: any("fault armed" in x for x in emu.console[seen:]), 120)
        armed = emu.sim_time
        await emu.wait_for(lambda: bool(emu.of_kind("reset")), 240)
        reset = emu.of_kind("reset")[0]
        assert reset.data["reset"] == "watchdog"
        # the stall is seen after 2 s, the WDT (5 s) then resets the chip
        assert 5.0 <= reset.t - armed <= 9.0, reset.t - armed
        # The same flash boots again and says why it restarted.
        await emu.wait_for(
            lambda: any("the watchdog reset the board" in x for x in emu.console[seen:]), 240
        )
        await emu.wait_for(lambda: emu.display() == " -D-", 240)
    finally:
        await board.stop()


async def test_the_emulated_chip_has_its_own_flash_id_and_keeps_its_filesystem(
    tmp_path: Path,
) -> None:
    need_emulator()
    async with EmulatedBoard(
        tmp_path, uf2=PRODUCTION_IMAGE, uid="0123456789abcdef", loads=False
    ) as emu:
        await repl(emu)
        emu.type("import machine, binascii; print('UID', binascii.hexlify(machine.unique_id()))\r")
        await emu.wait_for(lambda: any("UID b'0123456789abcdef'" in x for x in emu.console), 60)
        emu.type("f = open('/kept.txt', 'w'); f.write('kept'); f.close(); print('SAVED')\r")
        await emu.wait_for(lambda: any(x.startswith("SAVED") for x in emu.console), 60)
        await emu.run_for(0.5)
    async with EmulatedBoard(tmp_path, uid="0123456789abcdef", loads=False) as emu:  # no UF2
        await repl(emu)
        emu.type("print('GOT', open('/kept.txt').read())\r")
        await emu.wait_for(lambda: any("GOT kept" in x for x in emu.console), 60)


async def repl(emu: EmulatedBoard) -> None:
    """Wait for the USB console's REPL prompt (no main.py on this board)."""
    await emu.wait_for(lambda: bool(emu.of_kind("usb")), 60)
    await emu.run_for(1.0)
    emu.type("\r")
    await emu.wait_for(lambda: ">>> " in emu._console_tail, 60)
