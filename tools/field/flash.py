"""Flash group boards: compile the firmware, upload what changed, configure, check the boot.

``smartpdu flash --board pico_mcp3208 --group B --port PORT [--address N] [--calibration FILE]``

A board runs one of two MicroPython images (build/rp2/out, ``make firmware``): the
**production** image, with ``protocol/``, ``firmware/`` and ``boards/`` frozen in (what a group
board runs), or the **stock** image, plain MicroPython, to which the compiled firmware is
uploaded as files in /lib. With the production image only the config and ``main.py`` are
written; with the stock image the steps below upload the firmware too.

Writing an image first (``tools/field/flash_uf2.py``)::

    smartpdu flash --image production --board pico_mcp3208 --group B --port PORT

``--image production`` (or ``stock``) takes the image from build/rp2/out (the production one is
``smartpdu-rp2.uf2``, or ``firmware-frozen.uf2`` as ``../shared/rp2/build.sh`` names it);
``--uf2 FILE`` takes any RP2040 UF2 (checked: complete, RP2040 family, inside the flash). A
board running on ``--port`` is restarted into BOOTSEL mode from its REPL
(``machine.bootloader()``); one that is not (plugged in with BOOTSEL held) is waited for. The
image goes in with ``picotool load -x FILE`` when picotool was built with USB support and an
RP2040 in BOOTSEL mode (USB ``2e8a:0003``) is there, otherwise it is copied to the board's
RPI-RP2 drive (``--drive FOLDER``, or found under /media, /run/media, /mnt by its
``INFO_UF2.TXT``), synced, and done when the drive goes away. Then, once ``--port`` is back,
the board is configured as below; without ``--board`` only the image is written.
``--bootsel`` alone restarts the board on ``--port`` into BOOTSEL mode and stops.

1. Connects with mpremote's serial transport, interrupts the running firmware, soft-resets in
   the raw REPL (``main.py`` does not run), reads the board's MicroPython and .mpy format
   (``sys.implementation._mpy``) and its frozen modules (``help('modules')``): with
   ``firmware/app`` frozen, it runs the production image, which must have ``boards/<board>``
   frozen too, and steps 2-3 are skipped (no /lib files).
2. Compiles ``protocol/``, ``firmware/`` (with ``firmware/drivers/``) and ``boards/<board>.py``
   with ``mpy-cross`` for the board's architecture (``BOARD_ARCH``; the ``sim`` board takes the
   architecture its interpreter reports) and refuses a board whose .mpy format differs from the
   compiler's, saying which versions to match.
3. Lays the files out as the board imports them::

       /lib/protocol/*.mpy  /lib/firmware/*.mpy  /lib/firmware/drivers/*.mpy
       /lib/boards/__init__.mpy  /lib/boards/<board>.mpy
       /main.py                  from firmware.app import main; main("<board>")
       <CONFIG_DIR>/config.json  firmware/config.py's BoardConfig JSON

   ``CONFIG_DIR`` is the board module's ``CONFIG_DIR`` (``/config`` when it has none). The
   config on the board is kept (a user's rating, curve, noise floor are never lost) and only
   the group, address and calibration given are changed.
4. Hashes every file on the board (SHA-256, on the board) and uploads only those that differ;
   files in ``/lib/protocol``, ``/lib/firmware`` and ``/lib/boards`` that are not part of this
   firmware are removed (a stale ``.py`` would shadow its ``.mpy``); with the production image
   that is all of them: rp2's ``sys.path`` is ``['', '.frozen', '/lib']``, so frozen modules
   shadow them (they only fill the flash, and would run again, older than the image, if the
   board went back to the stock image). Copies at the root (``/firmware`` ...) shadow both and
   are removed on either image. Every file is hashed again after the upload.
5. Soft-resets the board in the friendly REPL, so ``main.py`` starts the firmware, and waits
   for its boot line ``smartPDU-INFO {json}`` (keys fw, board, group, address, uid, digest):
   the group, firmware version, board, address and config digest must match.

``smartpdu flash --all boards.toml`` (or ``.csv``) flashes several boards at once, one progress
bar per board (plain progress lines when stdout is not a terminal)::

    [[board]]                      # CSV: a header line port,board,group,address,calibration
    port = "/dev/ttyACM0"
    board = "pico_mcp3208"
    group = "A"
    address = 1                    # optional
    calibration = "cal/A.json"     # optional, relative to the list file

A calibration file is JSON: 12 gains (``[1.0021, 0.9987, …]``, or integers in ppm), or an
object with ``"cal_gain_ppm": [12 integers]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from tools.field import flash_uf2
from tools.field.flash_build import (
    BOARD_ARCH,
    REPO_ROOT,
    BoardFile,
    Builder,
    FlashError,
    MpyFormat,
    board_config_dir,
    board_sources,
    firmware_version,
    load_calibration,
    main_py,
    make_config,
    mpy_header_compatible,
)
from tools.field.flash_link import (
    INFO_PREFIX,
    BoardIdentity,
    BoardLink,
    FlashResult,
    ProgressCallback,
    fw_text,
    no_progress,
)

__all__ = [
    "BoardFile",
    "BoardIdentity",
    "BoardJob",
    "Builder",
    "FlashError",
    "FlashResult",
    "MpyFormat",
    "add_arguments",
    "check_compatible",
    "firmware_version",
    "flash_all",
    "flash_board",
    "load_board_list",
    "load_calibration",
    "main",
    "mpy_header_compatible",
    "run",
]

MANAGED_DIRS = ("/lib/protocol", "/lib/firmware", "/lib/boards")
# Copies at the filesystem's root: '' (the current folder, /) comes first in sys.path on a
# board (rp2: ['', '.frozen', '/lib']), so these would shadow both the image and /lib.
SHADOWING_DIRS = ("/protocol", "/firmware", "/boards")
SHADOWING_FILES = tuple(
    f"/{n}.{ext}" for n in ("protocol", "firmware", "boards") for ext in ("py", "mpy")
)
# The frozen module that makes an image a production image (firmware built in).
FROZEN_APP = "firmware/app"


def check_compatible(
    files: list[BoardFile], board: BoardIdentity, compiler: str, port: str
) -> None:
    """Refuse a board that could not import the compiled files, saying what to change."""
    bad = [f for f in files if not mpy_header_compatible(f.data[:4], board.mpy)]
    if not bad:
        return
    header = bad[0].data[:4]
    made = MpyFormat(header[1], header[2] & 3, header[2] >> 2)
    if made.version == board.mpy.version and made.sub_version in (0, board.mpy.sub_version):
        raise FlashError(
            f"{port}: the board is {board.mpy.arch_name} ({board.machine}) but this firmware "
            f"was compiled for {made.arch_name} ({bad[0].source}): is it the board you named "
            "(--board), or does it need --arch?"
        )
    raise FlashError(
        f"{port}: the board runs MicroPython {board.version} ({board.machine}), which imports "
        f"{board.mpy} files, but mpy-cross ({compiler or 'unknown version'}) made {made} "
        f"({bad[0].source}): install MicroPython matching mpy-cross on the board, or the "
        "mpy-cross matching the board's MicroPython."
    )


def _firmware_files(
    link: BoardLink,
    board: str,
    *,
    builder: Builder,
    arch: str | None,
    port: str,
    result: FlashResult,
    progress: ProgressCallback,
) -> list[BoardFile]:
    """The firmware files the board gets: none with the production image (it is frozen in,
    checked to have ``board``), else the sources compiled for the board's architecture."""
    identity = link.identity()
    frozen = link.frozen_modules()
    if FROZEN_APP in frozen:
        # The production image: the firmware is frozen into it and '.frozen' comes before
        # /lib in sys.path, so only the config and main.py go to the board.
        result.image = "production"
        if f"boards/{board}" not in frozen:
            built_in = sorted(
                n.removeprefix("boards/")
                for n in frozen
                if n.startswith("boards/") and n != "boards/__init__"
            )
            raise FlashError(
                f"{port}: the board runs the production image, which has no board "
                f"{board!r} built in (it has {', '.join(built_in) or 'none'}): is --board "
                "right, or does the board need a newer image (--image production)?"
            )
        return []
    target_arch = arch or BOARD_ARCH.get(board) or identity.mpy.arch_name
    progress("compiling", 0, 0, f"{board} for {target_arch}")
    files = builder.build(board, target_arch)
    check_compatible(files, identity, builder.compiler_version, port)
    return files


def _upload(
    link: BoardLink,
    files: list[BoardFile],
    *,
    port: str,
    result: FlashResult,
    progress: ProgressCallback,
) -> None:
    """Make the board's files ``files``: remove stale copies, upload what differs, verify."""
    wanted = {f.path for f in files}
    progress("hashing", 0, len(files), "")
    before = link.hashes([f.path for f in files])
    # Not part of this firmware: removed. With the production image that is every /lib
    # copy: the frozen modules shadow them ('.frozen' is before '/lib' in sys.path), so
    # they only fill the flash, and they would run again, older than the image, if the
    # board were ever put back on the stock image. Copies at the root shadow everything.
    root_copies = link.hashes(list(SHADOWING_FILES))
    stale = [p for p in link.list_files(MANAGED_DIRS + SHADOWING_DIRS) if p not in wanted]
    stale += [p for p in SHADOWING_FILES if root_copies.get(p, "-") != "-"]
    changed = [f for f in files if before.get(f.path) != f.sha256]
    result.unchanged = [f.path for f in files if before.get(f.path) == f.sha256]
    if stale:
        link.remove(stale)
        result.removed = stale
    dirs = sorted({p.rsplit("/", 1)[0] for p in (f.path for f in changed)} - {""})
    parents: set[str] = set()
    for d in dirs:
        parts = d.strip("/").split("/")
        parents.update("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))
    link.mkdirs(sorted(parents, key=lambda p: (p.count("/"), p)))
    for n, f in enumerate(changed, start=1):
        progress("uploading", n - 1, len(changed), f.path)
        link.write_file(f.path, f.data)
        result.uploaded.append(f.path)
    progress("verifying", len(changed), len(changed), "")
    after = link.hashes([f.path for f in files])
    wrong = [f.path for f in files if after.get(f.path) != f.sha256]
    if wrong:
        raise FlashError(f"{port}: SHA-256 differs after upload: {', '.join(wrong)}")


def _boot_problems(
    info: dict[str, Any],
    *,
    board: str,
    group: str | None,
    address: int | None,
    expected_fw: str | None,
    image: str,
    config_path: str,
    digest: int,
) -> list[str]:
    """What the boot line reports that differs from what was flashed."""
    problems = []
    if group and info.get("group") != group:
        problems.append(f"group {info.get('group')!r} (expected {group!r})")
    if expected_fw and "fw" in info and fw_text(info["fw"]) != expected_fw:
        if image == "production":
            problems.append(
                f"firmware {fw_text(info['fw'])} built into its image (the sources are "
                f"{expected_fw}: write the current image with --image production)"
            )
        else:
            problems.append(f"firmware {fw_text(info['fw'])} (expected {expected_fw})")
    if "board" in info and info["board"] != board:
        problems.append(f"board {info['board']!r} (expected {board!r})")
    if address is not None and "address" in info and info["address"] != address:
        problems.append(f"address {info['address']} (expected {address})")
    if info.get("config") == "defaults":
        problems.append(f"its config defaults (it could not use {config_path})")
    reported = info.get("digest")
    if isinstance(reported, str):
        with_digest = reported.lower().removeprefix("0x")
        if with_digest != f"{digest:08x}" and with_digest != str(digest):
            problems.append(f"config digest {reported} (expected {digest:08x})")
    elif isinstance(reported, int) and reported != digest:
        problems.append(f"config digest {reported:08x} (expected {digest:08x})")
    return problems


def flash_board(
    port: str,
    board: str,
    *,
    group: str | None,
    address: int | None = None,
    calibration: str | Path | None = None,
    builder: Builder | None = None,
    arch: str | None = None,
    info_timeout: float = 30.0,
    keep_config: bool = True,
    progress: ProgressCallback = no_progress,
) -> FlashResult:
    """Flash one board (see the module doc); raises FlashError with a clear message."""
    started = time.monotonic()
    builder = builder or Builder()
    if board not in BOARD_ARCH and arch is None:
        if not (builder.root / "boards" / f"{board}.py").exists():
            board_sources(builder.root, board)  # raises with the list of boards
        raise FlashError(f"board {board!r} has no architecture in BOARD_ARCH: give --arch")
    gains = load_calibration(calibration) if calibration else None
    expected_fw = firmware_version(builder.root)
    config_dir = board_config_dir(builder.root, board)
    config_path = config_dir.rstrip("/") + "/config.json"
    result = FlashResult(port, board)

    progress("connecting", 0, 0, port)
    link = BoardLink(port)
    try:
        link.enter_raw_repl()
        files = _firmware_files(
            link, board, builder=builder, arch=arch, port=port, result=result, progress=progress
        )
        existing = link.read_text(config_path) if keep_config else None
        config_text, digest = make_config(existing, group=group, address=address, gains=gains)
        files = [
            *files,
            BoardFile(config_path, config_text.encode(), "config"),
            BoardFile("/main.py", main_py(board), "main.py"),
        ]
        _upload(link, files, port=port, result=result, progress=progress)
        progress("booting", 0, 0, "waiting for " + INFO_PREFIX.strip())
        info = link.reset_and_wait_info(info_timeout)
    finally:
        link.close()
    result.info = info
    problems = _boot_problems(
        info,
        board=board,
        group=group,
        address=address,
        expected_fw=expected_fw,
        image=result.image,
        config_path=config_path,
        digest=digest,
    )
    if problems:
        raise FlashError(f"{port}: the board booted but reports " + ", ".join(problems))
    result.seconds = time.monotonic() - started
    progress("done", 1, 1, "")
    return result


# --------------------------------------------------------------------------- several boards


@dataclass(frozen=True)
class BoardJob:
    port: str
    board: str
    group: str | None
    address: int | None = None
    calibration: str | None = None


def load_board_list(path: str | Path) -> list[BoardJob]:
    """Boards to flash from a TOML (``[[board]]`` tables) or CSV file (see the module doc)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                rows: list[dict[str, Any]] = [
                    {k.strip(): (v or "").strip() for k, v in row.items() if k}
                    for row in csv.DictReader(handle)
                ]
        else:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            rows = cast(list[dict[str, Any]], data.get("board", []))
    except (OSError, ValueError) as exc:
        raise FlashError(f"{path}: {exc}") from None
    jobs = []
    for n, row in enumerate(rows, start=1):
        unknown = set(row) - {"port", "board", "group", "address", "calibration"}
        if unknown:
            raise FlashError(f"{path}: board {n}: unknown field(s) {', '.join(sorted(unknown))}")
        if not row.get("port") or not row.get("board"):
            raise FlashError(f"{path}: board {n}: port and board are required")
        address = row.get("address")
        calibration = row.get("calibration") or None
        if calibration and not Path(calibration).is_absolute():
            calibration = str(path.parent / calibration)
        try:
            address_int = int(address) if address not in (None, "") else None
        except (TypeError, ValueError):
            raise FlashError(f"{path}: board {n}: address {address!r} is not a number") from None
        jobs.append(
            BoardJob(
                str(row["port"]),
                str(row["board"]),
                str(row.get("group") or "") or None,
                address_int,
                calibration,
            )
        )
    if not jobs:
        raise FlashError(f"{path}: no boards listed")
    return jobs


class ProgressDisplay:
    """One line per board: a bar redrawn in place on a terminal, plain lines otherwise."""

    _STAGES = ("connecting", "compiling", "hashing", "uploading", "verifying", "booting", "done")

    def __init__(self, labels: list[str], out: IO[str], tty: bool) -> None:
        self.labels = labels
        self.out = out
        self.tty = tty
        self.lines = [f"{label}: waiting" for label in labels]
        self._last_stage = ["" for _ in labels]
        self._lock = threading.Lock()
        self._width = max(len(label) for label in labels)
        if tty:
            out.write("\n".join(self.lines) + "\n")
            out.flush()

    def callback(self, index: int) -> ProgressCallback:
        def update(stage: str, done: int, total: int, detail: str) -> None:
            self.update(index, stage, done, total, detail)

        return update

    def update(self, index: int, stage: str, done: int, total: int, detail: str) -> None:
        label = self.labels[index].ljust(self._width)
        with self._lock:
            if self.tty:
                step = self._STAGES.index(stage) if stage in self._STAGES else 0
                fraction = (step + (done / total if total else 0)) / (len(self._STAGES) - 1)
                filled = int(24 * min(1.0, fraction))
                bar = "#" * filled + "-" * (24 - filled)
                self.lines[index] = f"{label} [{bar}] {stage} {detail}"[:118]
                self._redraw()
            elif stage != self._last_stage[index]:
                self._last_stage[index] = stage
                if stage == "uploading":
                    detail = f"{total} changed file{'s' if total != 1 else ''}"
                self.out.write(f"{label} {stage} {detail}".rstrip() + "\n")
                self.out.flush()

    def finish(self, index: int, text: str) -> None:
        label = self.labels[index].ljust(self._width)
        with self._lock:
            self.lines[index] = f"{label} {text}"
            if self.tty:
                self._redraw()
            else:
                self.out.write(self.lines[index] + "\n")
                self.out.flush()

    def _redraw(self) -> None:
        self.out.write(f"\x1b[{len(self.lines)}F")
        for line in self.lines:
            self.out.write("\x1b[2K" + line + "\n")
        self.out.flush()


def flash_all(
    jobs: list[BoardJob],
    *,
    builder: Builder | None = None,
    out: IO[str] | None = None,
    info_timeout: float = 30.0,
    parallel: int = 4,
) -> list[FlashResult | FlashError]:
    """Flash every board of ``jobs`` (several at once); one result or error per job."""
    stream = out if out is not None else cast(IO[str], sys.stdout)
    builder = builder or Builder()
    labels = [f"{job.group or '-'} {job.board} {job.port}" for job in jobs]
    display = ProgressDisplay(labels, stream, stream.isatty())

    def one(index: int) -> FlashResult | FlashError:
        job = jobs[index]
        try:
            result = flash_board(
                job.port,
                job.board,
                group=job.group,
                address=job.address,
                calibration=job.calibration,
                builder=builder,
                info_timeout=info_timeout,
                progress=display.callback(index),
            )
        except FlashError as exc:
            display.finish(index, "FAILED: " + str(exc).splitlines()[0])
            return exc
        display.finish(index, _summary(result))
        return result

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, range(len(jobs))))


def _summary(result: FlashResult) -> str:
    info = result.info
    return (
        f"ok in {result.seconds:.1f} s: {len(result.uploaded)} uploaded, "
        f"{len(result.unchanged)} unchanged, {len(result.removed)} removed; "
        f"fw {fw_text(info.get('fw', '?'))} group {info.get('group')} "
        f"address {info.get('address')} uid {info.get('uid')}"
    )


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flash options, for ``smartpdu flash``."""
    parser.add_argument("--board", help=f"board module ({', '.join(BOARD_ARCH)})")
    parser.add_argument("--group", help="output group letter A..F")
    parser.add_argument("--port", help="the board's serial port (USB)")
    parser.add_argument("--address", type=int, help="bus address 1..239 (kept if not given)")
    parser.add_argument("--calibration", metavar="FILE", help="JSON with the 12 channel gains")
    parser.add_argument("--all", metavar="FILE", help="flash every board listed (TOML or CSV)")
    parser.add_argument("--arch", help="mpy-cross architecture (default: the board's)")
    parser.add_argument(
        "--source", default=str(REPO_ROOT), help="tree with protocol/, firmware/, boards/"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for INFO")
    parser.add_argument(
        "--reset-config", action="store_true", help="start from default config, not the board's"
    )
    image = parser.add_argument_group(
        "MicroPython image (a new board, or a new image; the board's config is kept)"
    )
    image.add_argument(
        "--image",
        choices=list(flash_uf2.IMAGES),
        help="write this image from build/rp2/out first: "
        + "; ".join(f"{name} = {text}" for name, text in flash_uf2.IMAGE_HELP.items()),
    )
    image.add_argument("--uf2", metavar="FILE", help="write this UF2 file first (not --image)")
    image.add_argument(
        "--drive",
        metavar="FOLDER",
        help="where the board's RPI-RP2 drive is mounted (found under /media, /run/media, "
        "/mnt when not given)",
    )
    image.add_argument(
        "--bootsel",
        action="store_true",
        help="only restart the board on --port into BOOTSEL mode (its RPI-RP2 drive appears)",
    )


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    stream = out if out is not None else cast(IO[str], sys.stdout)
    try:
        if args.bootsel or args.image or args.uf2:
            done = _run_image(args, stream)
            if done is not None:
                return done
        builder = Builder(Path(args.source))
        if args.all:
            jobs = load_board_list(args.all)
            results = flash_all(jobs, builder=builder, out=stream, info_timeout=args.timeout)
            failed = [r for r in results if isinstance(r, FlashError)]
            for error in failed:
                print(f"flash: {error}", file=sys.stderr)
            stream.write(f"{len(results) - len(failed)} of {len(results)} boards flashed\n")
            return 1 if failed else 0
        if not args.port or not args.board:
            print("flash: give --port and --board (or --all FILE)", file=sys.stderr)
            return 2
        if not args.group and args.board != "mains_status":
            print("flash: give --group (A..F)", file=sys.stderr)
            return 2
        label = f"{args.group or '-'} {args.board} {args.port}"
        display = ProgressDisplay([label], stream, stream.isatty())
        try:
            result = flash_board(
                args.port,
                args.board,
                group=args.group,
                address=args.address,
                calibration=args.calibration,
                builder=builder,
                arch=args.arch,
                info_timeout=args.timeout,
                keep_config=not args.reset_config,
                progress=display.callback(0),
            )
        except FlashError:
            display.finish(0, "FAILED")
            raise
        display.finish(0, _summary(result))
        return 0
    except FlashError as exc:
        print(f"flash: {exc}", file=sys.stderr)
        return 1


def _run_image(args: argparse.Namespace, stream: IO[str]) -> int | None:
    """``--bootsel``, ``--image``, ``--uf2``: an exit status, or None to go on configuring."""
    if args.all:
        print(
            "flash: --image, --uf2 and --bootsel take one board (--port), not --all",
            file=sys.stderr,
        )
        return 2
    if args.bootsel:
        if not args.port:
            print(
                "flash: --bootsel needs --port (the running board's serial port)", file=sys.stderr
            )
            return 2
        try:
            flash_uf2.reboot_to_bootsel(args.port)
        except flash_uf2.Uf2Error as exc:
            print(f"flash: {exc}", file=sys.stderr)
            return 1
        stream.write(
            f"{args.port}: restarted into BOOTSEL mode; its RPI-RP2 drive appears, "
            "ready for --image production\n"
        )
        return 0
    if args.image and args.uf2:
        print("flash: give --image or --uf2, not both", file=sys.stderr)
        return 2
    if args.board and not args.port:
        print("flash: give --port too, to configure the board once the image runs", file=sys.stderr)
        return 2
    last = [""]

    def progress(stage: str, done: int, total: int, detail: str) -> None:
        if stage != last[0]:
            last[0] = stage
            stream.write(f"image: {stage} {detail}".rstrip() + "\n")
            stream.flush()

    try:
        uf2 = Path(args.uf2) if args.uf2 else flash_uf2.image_path(args.image)
        written = flash_uf2.write_image(uf2, port=args.port, drive=args.drive, progress=progress)
        stream.write(
            f"image: {written.image.describe()} written through {written.method} "
            f"({written.target}) in {written.seconds:.1f} s\n"
        )
        if not args.board:
            stream.write(
                "image: the board restarts into it; configure it with "
                "smartpdu flash --board BOARD --group G --port PORT\n"
            )
            return 0
        flash_uf2.wait_for_port(args.port, args.timeout)
    except flash_uf2.Uf2Error as exc:
        print(f"flash: {exc}", file=sys.stderr)
        return 1
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smartpdu flash", description="flash group boards")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
