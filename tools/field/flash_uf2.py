"""Write a MicroPython image (UF2) to an RP2040 board in BOOTSEL mode.

Used by ``smartpdu flash --image production`` / ``--uf2 FILE`` (``tools/field/flash.py``); kept
free of the rest of the project.

An RP2040 in BOOTSEL mode (BOOTSEL held while plugging in, or ``machine.bootloader()`` from its
REPL) shows up on USB as ``2e8a:0003`` with a small mass-storage drive, ``RPI-RP2``, whose root
holds ``INFO_UF2.TXT``. Copying a UF2 file there writes it to the flash; after the last block
the chip restarts into the new image and the drive goes away. The same can be done with
``picotool load -x FILE`` over USB when picotool was built with libusb.

:func:`write_image` does it all: checks the UF2 is an RP2040 image, puts a running board on
``port`` into BOOTSEL first, waits for the BOOTSEL board, writes the image through picotool
(when picotool can reach USB and a BOOTSEL RP2040 is there) or by copying it to the drive
(fsync, then waits for the drive to go away), and says clearly what is missing otherwise.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.consts import BUS_BAUD

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO_ROOT / "build" / "rp2" / "out"
# --image NAME -> the files that can be it, first found wins (make firmware names the
# production image smartpdu-rp2.uf2; ../shared/rp2/build.sh calls it firmware-frozen.uf2).
IMAGES: dict[str, tuple[str, ...]] = {
    "production": ("smartpdu-rp2.uf2", "firmware-frozen.uf2"),
    "stock": ("firmware-stock.uf2",),
}
IMAGE_HELP = {
    "production": "MicroPython with the smartPDU firmware built in (what a group board runs)",
    "stock": "plain MicroPython (the firmware is then uploaded to /lib as files)",
}
PICOTOOL_BUILT = REPO_ROOT / "build" / "rp2" / "picotool-install" / "picotool" / "picotool"

UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_NOT_MAIN_FLASH = 0x0001
UF2_FLAG_FAMILY_ID = 0x2000
RP2040_FAMILY_ID = 0xE48BFF56
FAMILY_NAMES = {
    RP2040_FAMILY_ID: "RP2040",
    0xE48BFF59: "RP2350 (ARM, secure)",
    0xE48BFF5A: "RP2350 (RISC-V)",
    0xE48BFF5B: "RP2350 (ARM, non-secure)",
    0xE48BFF57: "absolute",
    0xE48BFF58: "data",
    0xADA52840: "nRF52840",
    0x68ED2B88: "SAMD21",
    0x1C5F21B0: "ESP32",
}
RP2040_FLASH = (0x10000000, 0x10000000 + 16 * 1024 * 1024)
RP2_USB_VENDOR = "2e8a"
RP2040_BOOTSEL_PRODUCT = "0003"
DRIVE_INFO = "INFO_UF2.TXT"
# Where desktops and udisks mount removable drives.
DRIVE_GLOBS = ("/media/*/*", "/media/*", "/run/media/*/*", "/mnt/*", "/mnt")

ProgressCallback = Callable[[str, int, int, str], None]  # stage, done, total, detail


def _no_progress(stage: str, done: int, total: int, detail: str) -> None:
    pass


class Uf2Error(Exception):
    """Writing the image failed; the message says what to do."""


# --------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class Uf2Image:
    path: Path
    blocks: int
    payload_bytes: int
    family: int | None
    start: int  # lowest flash address written
    end: int

    def describe(self) -> str:
        kb = self.payload_bytes / 1024
        return f"{self.path.name} ({kb:.0f} KB for the RP2040's flash, {self.blocks} UF2 blocks)"


def image_path(name: str, image_dir: Path = IMAGE_DIR) -> Path:
    """The UF2 file of ``--image name`` (production, stock); raises if it is not built."""
    if name not in IMAGES:
        raise Uf2Error(f"no image {name!r}: choose {' or '.join(IMAGES)}")
    for candidate in IMAGES[name]:
        if (image_dir / candidate).is_file():
            return image_dir / candidate
    raise Uf2Error(
        f"the {name} image is not built ({' or '.join(IMAGES[name])} in {image_dir}): "
        "run `make firmware`, or give the file with --uf2"
    )


def read_uf2(path: str | Path) -> Uf2Image:
    """Check ``path`` is a complete UF2 image for the RP2040's flash (raises Uf2Error)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Uf2Error(f"{path}: {exc.strerror or exc}") from None
    if not data or len(data) % 512:
        raise Uf2Error(f"{path}: not a UF2 file (its size is not a multiple of 512 bytes)")
    seen: set[int] = set()
    total = None
    families: set[int | None] = set()
    start, end, payload = 1 << 32, 0, 0
    for offset in range(0, len(data), 512):
        block = data[offset : offset + 512]
        magic0, magic1, flags, address, size, number, count, family = struct.unpack_from(
            "<8I", block
        )
        (magic_end,) = struct.unpack_from("<I", block, 508)
        if (magic0, magic1, magic_end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
            raise Uf2Error(f"{path}: not a UF2 file (block {offset // 512} has no UF2 magic)")
        if flags & UF2_FLAG_NOT_MAIN_FLASH:
            continue
        families.add(family if flags & UF2_FLAG_FAMILY_ID else None)
        if total is None:
            total = count
        if count != total or number >= count:
            raise Uf2Error(f"{path}: damaged UF2 file (block numbers do not add up)")
        seen.add(number)
        start, end = min(start, address), max(end, address + size)
        payload += size
    if total is None or len(seen) != total:
        raise Uf2Error(f"{path}: incomplete UF2 file ({len(seen)} of {total or 0} blocks)")
    other = families - {RP2040_FAMILY_ID, None}
    if other:
        name = FAMILY_NAMES.get(next(iter(other)) or 0, f"family 0x{next(iter(other)):08x}")
        raise Uf2Error(f"{path}: this UF2 is for {name}, not for the RP2040 of a group board")
    if start < RP2040_FLASH[0] or end > RP2040_FLASH[1]:
        raise Uf2Error(f"{path}: this UF2 writes outside the RP2040's flash (0x{start:08x})")
    family = RP2040_FAMILY_ID if RP2040_FAMILY_ID in families else None
    return Uf2Image(path, total, payload, family, start, end)


# --------------------------------------------------------------------------- the USB side


def bootsel_devices(sysfs: Path = Path("/sys/bus/usb/devices")) -> list[str]:
    """USB devices that are an RP2040 in BOOTSEL mode (``2e8a:0003``), by sysfs name."""
    found = []
    for device in sorted(sysfs.glob("*")):
        try:
            vendor = (device / "idVendor").read_text().strip().lower()
            product = (device / "idProduct").read_text().strip().lower()
        except OSError:
            continue
        if vendor == RP2_USB_VENDOR and product == RP2040_BOOTSEL_PRODUCT:
            found.append(device.name)
    return found


def drive_info(folder: Path) -> dict[str, str] | None:
    """The fields of an RP2040 drive's INFO_UF2.TXT, or None when ``folder`` is not one."""
    try:
        text = (folder / DRIVE_INFO).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def is_rp2040_drive(info: dict[str, str]) -> bool:
    return info.get("Board-ID", "").startswith("RPI-RP2")


def find_drives(patterns: Sequence[str] = DRIVE_GLOBS) -> list[Path]:
    """Mounted RP2040 BOOTSEL drives (folders with an INFO_UF2.TXT saying RPI-RP2)."""
    found: list[Path] = []
    for pattern in patterns:
        for name in sorted(glob.glob(pattern)):
            folder = Path(name)
            info = drive_info(folder)
            if info is not None and is_rp2040_drive(info) and folder not in found:
                found.append(folder)
    return found


@dataclass(frozen=True)
class Picotool:
    command: str | None
    usb: bool  # built with libusb: can load images into a BOOTSEL board
    why: str  # when it cannot: what is missing


def find_picotool(command: str | None = None) -> Picotool:
    """picotool on PATH or built by ../shared/rp2/build.sh, and whether it can reach USB."""
    candidates = [command] if command else [shutil.which("picotool"), str(PICOTOOL_BUILT)]
    for candidate in candidates:
        if not candidate or not (Path(candidate).is_file() and os.access(candidate, os.X_OK)):
            continue
        try:
            done = subprocess.run(
                [candidate, "help"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Picotool(candidate, False, f"picotool ({candidate}) does not run: {exc}")
        text = done.stdout + done.stderr
        commands = {line.split()[0] for line in text.splitlines() if line.startswith("    ")}
        if "without USB support" in text or "load" not in commands:
            return Picotool(
                candidate,
                False,
                f"picotool ({candidate}) was built without USB support (no libusb), so it "
                "cannot load an image into a board",
            )
        return Picotool(candidate, True, "")
    return Picotool(None, False, "picotool is not installed")


def load_with_picotool(picotool: str, image: Path, timeout: float = 120.0) -> str:
    """``picotool load -x IMAGE``: write the image into the BOOTSEL board and start it."""
    try:
        done = subprocess.run(
            [picotool, "load", "-x", str(image)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Uf2Error(f"picotool load failed: {exc}") from None
    if done.returncode:
        text = (done.stderr or done.stdout).strip()
        raise Uf2Error(f"picotool load -x {image.name} failed: {text}")
    return done.stdout


def copy_to_drive(
    image: Uf2Image, drive: Path, *, gone_timeout: float = 30.0, progress: ProgressCallback
) -> None:
    """Copy the UF2 to the BOOTSEL drive, fsync, and wait until the drive goes away.

    The RP2040 writes each block to flash as it arrives and restarts after the last one, so
    the drive vanishing is the sign the image was taken. A write error once the whole file
    went out is what some hosts report when the drive vanishes under them: it counts as done
    only if the drive then goes away.
    """
    data = image.path.read_bytes()
    target = drive / image.path.name
    late_error: OSError | None = None
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise Uf2Error(f"cannot write to the drive {drive}: {exc.strerror or exc}") from None
    try:
        step = 64 * 1024
        for offset in range(0, len(data), step):
            progress("writing", offset, len(data), f"to {drive}")
            view = memoryview(data)[offset : offset + step]
            while view:
                written = os.write(fd, view)
                view = view[written:]
        progress("writing", len(data), len(data), f"to {drive}")
        os.fsync(fd)
    except OSError as exc:
        late_error = exc
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            late_error = late_error or exc
    progress("restarting", 0, 0, "waiting for the drive to go away")
    deadline = time.monotonic() + gone_timeout
    while time.monotonic() < deadline:
        if drive_info(drive) is None:
            return
        time.sleep(0.1)
    if late_error is not None:
        raise Uf2Error(f"writing {target} failed: {late_error.strerror or late_error}")
    raise Uf2Error(
        f"the drive {drive} is still there {gone_timeout:g} s after the image was copied: "
        "the board did not take it (unplug the board, plug it in with BOOTSEL held, try again)"
    )


# --------------------------------------------------------------------------- the board side


def reboot_to_bootsel(port: str) -> None:
    """Restart the running MicroPython board on ``port`` into BOOTSEL (``machine.bootloader()``)."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    errors = (TransportError, OSError)
    try:
        transport = SerialTransport(port, baudrate=BUS_BAUD)
    except errors as exc:
        raise Uf2Error(f"{port}: cannot open the port ({exc})") from None
    try:
        transport.enter_raw_repl(soft_reset=False)
        transport.exec_raw_no_follow("import machine\nmachine.bootloader()")
    except errors as exc:
        raise Uf2Error(
            f"{port}: the board's REPL did not answer ({exc}); hold BOOTSEL while plugging "
            "it in instead"
        ) from None
    finally:
        with contextlib.suppress(*errors):
            transport.close()


def port_answers(port: str) -> bool:
    """Is there a serial port at ``port`` (a running board; in BOOTSEL it has none)?"""
    return Path(port).exists()


def wait_for_port(port: str, timeout: float, settle: float = 1.0) -> None:
    """Wait until the board's serial port is back (after the image was written)."""
    deadline = time.monotonic() + timeout
    while not Path(port).exists():
        if time.monotonic() > deadline:
            raise Uf2Error(
                f"{port} did not come back within {timeout:g} s after the image was written: "
                "is the board plugged in (its port name may have changed; "
                "/dev/serial/by-id/ names stay the same)?"
            )
        time.sleep(0.2)
    time.sleep(settle)  # udev sets its owner and mode just after the node appears


@dataclass
class WriteResult:
    image: Uf2Image
    method: str  # "picotool" or "drive"
    target: str  # the drive folder, or the USB device
    rebooted: bool  # the board was put into BOOTSEL from its REPL first
    seconds: float


def write_image(
    uf2: str | Path,
    *,
    port: str | None = None,
    drive: str | Path | None = None,
    picotool: Picotool | None = None,
    bootsel_timeout: float = 30.0,
    gone_timeout: float = 30.0,
    drive_globs: Sequence[str] = DRIVE_GLOBS,
    sysfs: Path = Path("/sys/bus/usb/devices"),
    progress: ProgressCallback = _no_progress,
) -> WriteResult:
    """Write ``uf2`` to a board in BOOTSEL mode (see the module doc).

    With ``port`` naming a running board, that board is restarted into BOOTSEL first. With
    ``drive``, only that folder is used (no picotool); without, picotool when it can reach a
    BOOTSEL RP2040, else the first RP2040 drive mounted under ``drive_globs``.
    """
    started = time.monotonic()
    image = read_uf2(uf2)
    rebooted = False
    if port and port_answers(port):
        progress("bootsel", 0, 0, f"restarting {port} into BOOTSEL")
        reboot_to_bootsel(port)
        rebooted = True
    tool = picotool if picotool is not None else find_picotool()
    wanted = Path(drive) if drive is not None else None
    progress("bootsel", 0, 0, "waiting for the board in BOOTSEL mode")
    deadline = time.monotonic() + bootsel_timeout
    usb: list[str] = []
    while True:
        if wanted is not None:
            info = drive_info(wanted)
            if info is not None:
                if not is_rp2040_drive(info):
                    board_id = info.get("Board-ID", "?")
                    raise Uf2Error(f"{wanted} is the drive of a {board_id}, not of an RP2040")
                copy_to_drive(image, wanted, gone_timeout=gone_timeout, progress=progress)
                return WriteResult(image, "drive", str(wanted), rebooted, _since(started))
        else:
            usb = bootsel_devices(sysfs)
            if usb and tool.usb and tool.command:
                progress("writing", 0, 0, f"picotool load -x {image.path.name}")
                load_with_picotool(tool.command, image.path)
                return WriteResult(image, "picotool", usb[0], rebooted, _since(started))
            drives = find_drives(drive_globs)
            if len(drives) > 1:
                listed = ", ".join(str(d) for d in drives)
                raise Uf2Error(f"several RP2040 drives are mounted ({listed}): give --drive")
            if drives:
                copy_to_drive(image, drives[0], gone_timeout=gone_timeout, progress=progress)
                return WriteResult(image, "drive", str(drives[0]), rebooted, _since(started))
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    raise Uf2Error(_not_found(wanted, usb, tool, bootsel_timeout, rebooted))


def _since(started: float) -> float:
    return time.monotonic() - started


def _not_found(
    wanted: Path | None, usb: list[str], tool: Picotool, timeout: float, rebooted: bool
) -> str:
    how = (
        "the board was told to restart into BOOTSEL but"
        if rebooted
        else "put the board into BOOTSEL mode (hold BOOTSEL while plugging it in, or give "
        "--port of the running board);"
    )
    if wanted is not None:
        return f"{how} no RP2040 drive ({DRIVE_INFO}) appeared at {wanted} within {timeout:g} s"
    if usb:
        return (
            f"an RP2040 in BOOTSEL mode is on USB ({RP2_USB_VENDOR}:{RP2040_BOOTSEL_PRODUCT}) "
            f"but its RPI-RP2 drive is not mounted, and {tool.why}: mount the drive (e.g. "
            "`udisksctl mount -b /dev/sdX1`) and give --drive, or install picotool with USB "
            "support"
        )
    return (
        f"{how} no RP2040 in BOOTSEL mode was found within {timeout:g} s (no "
        f"{RP2_USB_VENDOR}:{RP2040_BOOTSEL_PRODUCT} USB device, no RPI-RP2 drive mounted "
        "under /media, /run/media or /mnt); if its drive is mounted elsewhere, give --drive"
    )
