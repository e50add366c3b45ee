"""``smartpdu flash`` on an emulated RP2040 running the real rp2 MicroPython images.

The board is ``tools.rp2emu.EmulatedBoard`` (rp2040js; ~0.3x real time); its USB CDC is a
pseudo-terminal that the real mpremote opens as it would /dev/ttyACM0. The images come from
``make firmware`` (build/rp2/out): the stock RPI_PICO image, to which ``smartpdu flash``
uploads the compiled firmware to /lib, and the production image with the firmware frozen in,
to which it writes only the config and main.py.

A UF2 reaches the emulated flash only through ``EmulatedBoard(uf2=...)`` (as the BOOTSEL
drive writes it): the emulator has no USB mass-storage device. So the BOOTSEL step is shown
in two halves: ``smartpdu flash --image production`` restarts the emulated board into
BOOTSEL from its REPL and copies the image to a folder imitating the RPI-RP2 drive; the image
copied there is then what the next emulated board boots from, on the same flash (its littlefs
with the stock board's /lib and /config kept, as on a real board).

Each test prints its wall times (``pytest -s``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from tests.requirements import requires
from tests.tools.field.test_flash import FakeDrive
from tools.field import flash, flash_uf2
from tools.field.flash import FlashResult, flash_board
from tools.rp2emu import STOCK_IMAGE, EmulatedBoard, EmulatorError, check_installed

BOARD = "pico_mcp3208"
INFO_TIMEOUT = 180.0  # seconds from reset to the boot line; the chip runs at ~0.3x


def _production() -> Path | None:
    try:
        return flash_uf2.image_path("production")
    except flash_uf2.Uf2Error:
        return None


PRODUCTION = _production()


def _skip_reason() -> str | None:
    if not STOCK_IMAGE.exists() or PRODUCTION is None:
        return "the rp2 images are not built (build/rp2/out): run `make firmware`"
    try:
        check_installed()
    except EmulatorError as exc:
        return f"the emulated RP2040 is not installed: {exc}"
    return None


pytestmark = [
    requires(_skip_reason()),
    pytest.mark.timeout(900),
]


def timed(label: str, started: float) -> float:
    seconds = time.monotonic() - started
    print(f"[timing] {label}: {seconds:.1f} s")
    return seconds


def flash_cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    flash.add_arguments(parser)
    out = io.StringIO()
    code = flash.run(parser.parse_args(list(argv)), out=out)
    return code, out.getvalue()


def emulated(workdir: Path, uf2: Path | None) -> EmulatedBoard:
    # No load generator: flashing needs no currents, and with it the emulated chip was seen
    # to stop for good after a hard reset (node and loadgen idle, no more USB output).
    return EmulatedBoard(workdir=workdir, uf2=uf2, name="board", loads=False)


async def flash_in_thread(port: str, group: str) -> FlashResult:
    return await asyncio.to_thread(flash_board, port, BOARD, group=group, info_timeout=INFO_TIMEOUT)


def open_usb(board: EmulatedBoard) -> serial.Serial:
    """The board's USB console, opened as a terminal would (before it boots: what a board
    prints while no program has its port open is lost, on the emulator as on a Pico)."""
    return serial.Serial(board.port, 115200, timeout=0.2)


async def read_until(usb: serial.Serial, pattern: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s: {seen[-500:]!r}"
        seen += await asyncio.to_thread(usb.read, 4096)
    return seen


async def boot_line(usb: serial.Serial) -> dict[str, object]:
    seen = await read_until(usb, rb"smartPDU-INFO \{[^\r\n]*\}\r?\n", INFO_TIMEOUT)
    match = re.search(rb"smartPDU-INFO (\{[^\r\n]*\})", seen)
    assert match is not None
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def stock_flashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The flash of a board that got the stock image and then ``smartpdu flash`` (group B)."""
    workdir = tmp_path_factory.mktemp("stock")

    async def go() -> str:
        started = time.monotonic()
        async with emulated(workdir, STOCK_IMAGE) as board:
            timed("stock image: emulator up", started)
            code, out = await asyncio.to_thread(
                flash_cli, "--board", BOARD, "--group", "B", "--port", board.port,
                "--timeout", str(INFO_TIMEOUT),
            )  # fmt: skip
            timed("stock image: first smartpdu flash (all modules)", started)
            assert code == 0, out
        return out

    out = asyncio.run(go())
    yield workdir, out


def test_stock_image_flashed_boots_with_group_b_and_a_second_flash_uploads_nothing(
    stock_flashed: tuple[Path, str], tmp_path: Path
) -> None:
    workdir, out = stock_flashed
    assert re.search(r"ok in [\d.]+ s: (\d+) uploaded, 0 unchanged", out), out
    uploaded = int(re.search(r"(\d+) uploaded", out).group(1))  # type: ignore[union-attr]
    assert uploaded > 20 and "group B" in out
    shutil.copy(workdir / "board-flash.bin", tmp_path / "board-flash.bin")

    async def go() -> None:
        started = time.monotonic()
        # Power on from the kept flash (no UF2): main.py starts the flashed firmware.
        async with emulated(tmp_path, None) as board:
            with open_usb(board) as usb:
                info = await boot_line(usb)
                timed("stock image: power-on to smartPDU-INFO", started)
                assert info["group"] == "B" and info["board"] == BOARD
                assert info["config"] == "ok"
                reset_started = time.monotonic()
                board.reset()  # the RUN pin: a hard reset
                info = await boot_line(usb)
                timed("stock image: hard reset to smartPDU-INFO", reset_started)
                assert info["group"] == "B"

            again_started = time.monotonic()
            again = await flash_in_thread(board.port, "B")
            timed("stock image: second smartpdu flash (nothing changed)", again_started)
            assert again.image == "stock"
            assert again.uploaded == [] and again.removed == []
            assert len(again.unchanged) == uploaded
            assert again.info["group"] == "B"

    asyncio.run(go())


def test_production_image_gets_only_its_config(tmp_path: Path) -> None:
    assert PRODUCTION is not None

    async def go() -> None:
        started = time.monotonic()
        async with emulated(tmp_path, PRODUCTION) as board:
            first = await flash_in_thread(board.port, "C")
            timed("production image: first smartpdu flash (config + main.py)", started)
            assert first.image == "production"
            assert first.uploaded == ["/config/config.json", "/main.py"]
            assert first.removed == []
            assert first.info["group"] == "C" and first.info["board"] == BOARD
            again_started = time.monotonic()
            again = await flash_in_thread(board.port, "C")
            timed("production image: second smartpdu flash", again_started)
            assert again.uploaded == [] and again.info["group"] == "C"

    asyncio.run(go())


def test_stock_board_gets_the_production_image_through_bootsel(
    stock_flashed: tuple[Path, str], tmp_path: Path
) -> None:
    production = PRODUCTION
    assert production is not None
    workdir, _ = stock_flashed
    shutil.copy(workdir / "board-flash.bin", tmp_path / "board-flash.bin")
    drive = FakeDrive(tmp_path / "media" / "RPI-RP2", tmp_path / "flashed", appear_after=2.0)

    async def go() -> None:
        started = time.monotonic()
        async with emulated(tmp_path, None) as board:
            with open_usb(board) as usb:
                assert (await boot_line(usb))["group"] == "B"
            timed("bootsel: stock board up", started)
            write_started = time.monotonic()
            drive.start()
            try:
                code, out = await asyncio.to_thread(
                    flash_cli, "--image", "production", "--port", board.port,
                    "--drive", str(drive.folder),
                )  # fmt: skip
            finally:
                drive.stop()
            timed("bootsel: machine.bootloader() + copy to the drive", write_started)
            assert code == 0, out
            assert "restarting" in out and "written through drive" in out
            assert drive.image is not None
            assert drive.image.read_bytes() == production.read_bytes()
            # machine.bootloader() ran: the chip is in its bootrom, MicroPython is gone from
            # the USB CDC (Ctrl-C brings no prompt).
            with open_usb(board) as usb:
                usb.write(b"\x03\x03\r\n")
                await asyncio.sleep(3)
                after = usb.read(usb.in_waiting or 1)
            assert b">>>" not in after, after

        # The chip restarts into the image the drive took; the littlefs (stock /lib, /config)
        # is kept. smartpdu flash writes only the config, removes the stale /lib copies.
        production_started = time.monotonic()
        async with emulated(tmp_path, drive.image) as board:
            result = await flash_in_thread(board.port, "D")
            timed("bootsel: production image, smartpdu flash", production_started)
            assert result.image == "production"
            assert result.uploaded == ["/config/config.json"]
            assert result.removed and all(p.startswith("/lib/") for p in result.removed)
            assert "/lib/firmware/app.mpy" in result.removed
            assert result.info["group"] == "D"

    asyncio.run(go())
