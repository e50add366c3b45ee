"""``smartpdu flash`` against virtual USB boards with the real mpremote transport and mpy-cross.

The firmware is compiled from a copy of the repository's protocol/, firmware/ and boards/ (so a
test can change one file). Until ``firmware/app.py`` exists, the copy gets a stand-in app that
prints the boot line the real one will print; then the real firmware runs as board ``sim``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.config import BoardConfig
from tests.requirements import require
from tools.field import flash, flash_uf2
from tools.field.flash import Builder, FlashError, MpyFormat, flash_board, mpy_header_compatible
from tools.field.usbboard import VirtualUsbBoard

REPO_ROOT = Path(__file__).resolve().parents[3]
REAL_APP = (REPO_ROOT / "firmware/app.py").exists()

STAND_IN_APP = '''\
"""Stand-in for firmware/app.py (tests only): reports the boot line, then idles."""
import json
import time

from firmware.config import ConfigStore
from firmware.slave import FW_VERSION


def main(board_name):
    import boards

    cfg = ConfigStore("/config").load()
    info = {
        "fw": "%d.%d.%d" % FW_VERSION,
        "board": board_name,
        "group": cfg.group,
        "address": cfg.address,
        "uid": "stand-in",
        "digest": cfg.digest(),
    }
    print("smartPDU-INFO " + json.dumps(info))
    while True:
        time.sleep(0.1)
'''

SILENT_APP = "def main(board_name):\n    print('this firmware never reports')\n"


def stage_source(root: Path, app: str | None = None) -> Path:
    """A copy of the board sources; with the stand-in app when the real one is missing."""
    for folder in ("protocol", "firmware", "boards"):
        shutil.copytree(
            REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    if app is not None:
        (root / "firmware/app.py").write_text(app)
    elif not REAL_APP:
        (root / "firmware/app.py").write_text(STAND_IN_APP)
    return root


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return stage_source(tmp_path / "src")


def virtual_board(flash_dir: Path) -> VirtualUsbBoard:
    # The sim firmware keeps its config where a flashed board has it (/config), off the bus.
    return VirtualUsbBoard(flash_dir, env={"SMARTPDU_CONFIG_DIR": "/config", "SMARTPDU_BUS": ""})


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualUsbBoard]:
    with virtual_board(tmp_path / "flash") as b:
        yield b


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_lib(source: Path, board: str) -> list[str]:
    names = [
        p.relative_to(source).with_suffix(".mpy").as_posix()
        for folder in ("protocol", "firmware")
        for p in (source / folder).rglob("*.py")
        if p.name != "_crc_host.py"
    ]
    return sorted(
        ["lib/" + n for n in names] + ["lib/boards/__init__.mpy", f"lib/boards/{board}.mpy"]
    )


def test_flash_uploads_verifies_configures_and_checks_the_boot_line(
    board: VirtualUsbBoard, source: Path, tmp_path: Path
) -> None:
    calibration = tmp_path / "cal.json"
    gains = [1.0 + ch / 1000 for ch in range(12)]
    calibration.write_text(json.dumps(gains))
    builder = Builder(source)
    stages: list[str] = []
    result = flash_board(
        board.port,
        "sim",
        group="B",
        address=7,
        calibration=calibration,
        builder=builder,
        progress=lambda stage, done, total, detail: stages.append(stage),
    )
    sandbox = board.sandbox
    lib = sorted(p.relative_to(sandbox).as_posix() for p in (sandbox / "lib").rglob("*.mpy"))
    assert lib == expected_lib(source, "sim")
    assert not list((sandbox / "lib").rglob("*.py"))
    # Every file on the board is byte-identical to the build (hashes verified on the board too).
    built = {f.path: f for f in builder.build("sim", "x64")}
    for path, item in built.items():
        assert sha256(sandbox / path.lstrip("/")) == item.sha256, path
    assert (sandbox / "main.py").read_text() == 'from firmware.app import main\nmain("sim")\n'

    config = BoardConfig.from_json((sandbox / "config/config.json").read_text())
    assert config.group == "B" and config.address == 7
    assert config.cal_gain_ppm == [1_000_000 + ch * 1000 for ch in range(12)]

    assert result.info["group"] == "B"
    assert result.info["board"] == "sim"
    assert result.info["fw"] in (flash.firmware_version(source), [1, 0, 0])
    assert len(result.uploaded) == len(built) + 2 and not result.unchanged
    assert stages[0] == "connecting" and stages[-1] == "done" and "uploading" in stages


def test_second_flash_uploads_only_the_changed_file(board: VirtualUsbBoard, source: Path) -> None:
    first = flash_board(board.port, "sim", group="C", builder=Builder(source))
    assert first.uploaded

    again = flash_board(board.port, "sim", group="C", builder=Builder(source))
    assert again.uploaded == [] and again.removed == []
    assert len(again.unchanged) == len(first.uploaded)

    panel = source / "firmware/panel.py"
    panel.write_text(panel.read_text() + "\n_FLASH_TEST_MARK = 1\n")
    (board.sandbox / "lib/firmware/stale.py").write_text("raise ImportError('stale')\n")
    third = flash_board(board.port, "sim", group="C", builder=Builder(source))
    assert third.uploaded == ["/lib/firmware/panel.mpy"]
    assert third.removed == ["/lib/firmware/stale.py"]
    assert not (board.sandbox / "lib/firmware/stale.py").exists()
    assert sha256(board.sandbox / "lib/firmware/panel.mpy") == next(
        f.sha256 for f in Builder(source).build("sim", "x64") if f.path == "/lib/firmware/panel.mpy"
    )

    # A new group changes only the config file; the rest of the config is kept.
    fourth = flash_board(board.port, "sim", group="D", builder=Builder(source))
    assert fourth.uploaded == ["/config/config.json"]
    assert fourth.info["group"] == "D"


def test_a_board_whose_mpy_format_differs_is_refused(board: VirtualUsbBoard, source: Path) -> None:
    # The RP2040 build (armv6m) cannot run on this board (the unix port reports x64).
    with pytest.raises(FlashError) as refused:
        flash_board(board.port, "pico_mcp3208", group="A", builder=Builder(source))
    message = str(refused.value)
    assert "armv6m" in message and "x64" in message and "--board" in message
    assert not (board.sandbox / "lib").exists()
    assert not (board.sandbox / "main.py").exists()


def test_mpy_format_rule() -> None:
    board = MpyFormat.from_sys(2822)  # what the 1.29 unix port reports
    assert (board.version, board.sub_version, board.arch_name) == (6, 3, "x64")
    assert mpy_header_compatible(b"M\x06\x00\x1f", board)  # bytecode only: any arch
    assert mpy_header_compatible(b"M\x06\x0b\x1f", board)  # x64 native code, v6.3
    assert not mpy_header_compatible(b"M\x06\x13\x1f", board)  # armv6m native code
    assert not mpy_header_compatible(b"M\x05\x00\x1f", board)  # older format
    assert not mpy_header_compatible(b"M\x06\x0a\x1f", board)  # x64, sub-version 2

    # A board with an older MicroPython (mpy v6.2) is refused with both versions named.
    old_pico = flash.BoardIdentity("1.22.0", "Raspberry Pi Pico with RP2040", MpyFormat(6, 2, 4))
    files = [flash.BoardFile("/lib/x.mpy", b"M\x06\x13\x1f", "x.py")]
    with pytest.raises(FlashError) as refused:
        flash.check_compatible(files, old_pico, "mpy-cross emitting mpy v6.3", "/dev/ttyACM0")
    message = str(refused.value)
    assert "1.22.0" in message and "mpy v6.2 armv6m" in message and "mpy v6.3" in message


def test_a_board_that_does_not_report_is_a_clear_error(
    board: VirtualUsbBoard, tmp_path: Path
) -> None:
    silent = stage_source(tmp_path / "silent", app=SILENT_APP)
    with pytest.raises(FlashError) as failed:
        flash_board(board.port, "sim", group="A", builder=Builder(silent), info_timeout=5)
    message = str(failed.value)
    assert "smartPDU-INFO" in message and "this firmware never reports" in message


def test_flash_all_from_a_toml_list_with_plain_progress(source: Path, tmp_path: Path) -> None:
    with virtual_board(tmp_path / "a") as a, virtual_board(tmp_path / "b") as b:
        listing = tmp_path / "boards.toml"
        (tmp_path / "cal.json").write_text(json.dumps({"cal_gain_ppm": [1_001_000] * 12}))
        listing.write_text(
            f'[[board]]\nport = "{a.port}"\nboard = "sim"\ngroup = "A"\naddress = 1\n\n'
            f'[[board]]\nport = "{b.port}"\nboard = "sim"\ngroup = "B"\n'
            'calibration = "cal.json"\n'
        )
        out = io.StringIO()
        parser = argparse.ArgumentParser()
        flash.add_arguments(parser)
        args = parser.parse_args(["--all", str(listing), "--source", str(source)])
        assert flash.run(args, out=out) == 0, out.getvalue()
        text = out.getvalue()
        assert "2 of 2 boards flashed" in text
        assert "\x1b[" not in text  # not a terminal: plain lines
        assert any(line.startswith("A sim") and "uploading" in line for line in text.splitlines())
        for sandbox, group in ((a.sandbox, "A"), (b.sandbox, "B")):
            config = BoardConfig.from_json((sandbox / "config/config.json").read_text())
            assert config.group == group
        assert (
            BoardConfig.from_json((b.sandbox / "config/config.json").read_text()).cal_gain_ppm
            == [1_001_000] * 12
        )


def test_command_line_errors_are_one_clear_line(tmp_path: Path) -> None:
    assert flash.main(["--port", "/dev/null", "--board", "sim"]) == 2  # no group
    missing = tmp_path / "none.toml"
    missing.write_text("")
    assert flash.main(["--all", str(missing)]) == 1
    assert flash.main(["--port", str(tmp_path / "nope"), "--board", "sim", "--group", "A"]) == 1


def test_board_lists_in_csv_and_toml(tmp_path: Path) -> None:
    csv_file = tmp_path / "boards.csv"
    csv_file.write_text(
        "port,board,group,address,calibration\n"
        "/dev/ttyACM0,pico_mcp3208,A,1,cal/a.json\n"
        "/dev/ttyACM1,mains_status,,,\n"
    )
    jobs = flash.load_board_list(csv_file)
    assert jobs == [
        flash.BoardJob("/dev/ttyACM0", "pico_mcp3208", "A", 1, str(tmp_path / "cal/a.json")),
        flash.BoardJob("/dev/ttyACM1", "mains_status", None, None, None),
    ]
    toml_file = tmp_path / "boards.toml"
    toml_file.write_text(
        '[[board]]\nport = "/dev/ttyACM0"\nboard = "sim"\ngroup = "B"\nspeed = 1\n'
    )
    with pytest.raises(FlashError, match="unknown field"):
        flash.load_board_list(toml_file)
    bad_gains = tmp_path / "bad.json"
    bad_gains.write_text("[1.0, 2.5]")
    with pytest.raises(FlashError, match="12 gains"):
        flash.load_calibration(bad_gains)


# --------------------------------------------------------------------------- UF2 / BOOTSEL

DRIVE_INFO_TEXT = "UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n"


def make_uf2(path: Path, payload: bytes, family: int = flash_uf2.RP2040_FAMILY_ID) -> Path:
    """A UF2 file as MicroPython's build makes one: 256-byte blocks into 0x10000000..."""
    chunks = [payload[i : i + 256].ljust(256, b"\xff") for i in range(0, len(payload), 256)]
    blocks = []
    for n, chunk in enumerate(chunks):
        head = struct.pack(
            "<8I",
            flash_uf2.UF2_MAGIC_START0,
            flash_uf2.UF2_MAGIC_START1,
            flash_uf2.UF2_FLAG_FAMILY_ID,
            0x10000000 + 256 * n,
            256,
            n,
            len(chunks),
            family,
        )
        blocks.append(head + chunk.ljust(476, b"\0") + struct.pack("<I", flash_uf2.UF2_MAGIC_END))
    path.write_bytes(b"".join(blocks))
    return path


class FakeDrive(threading.Thread):
    """Imitates an RP2040's RPI-RP2 drive: appears (INFO_UF2.TXT) after ``appear_after`` s;
    once a complete UF2 has been copied onto it, "restarts": the file is moved to
    ``captured`` and the drive disappears (the folder is removed), as the chip does after
    the last block. (rp2040js has no USB mass-storage device; this is the host's view.)"""

    def __init__(self, folder: Path, captured: Path, appear_after: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.captured = captured
        self.appear_after = appear_after
        self.image: Path | None = None
        self.appeared = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        if self._stop_event.wait(self.appear_after):
            return
        self.folder.mkdir(parents=True)
        (self.folder / "INDEX.HTM").write_text("<html>Raspberry Pi</html>\n")
        (self.folder / "INFO_UF2.TXT").write_text(DRIVE_INFO_TEXT)
        self.appeared.set()
        while not self._stop_event.wait(0.05):
            for candidate in self.folder.glob("*.uf2"):
                try:
                    flash_uf2.read_uf2(candidate)
                except flash_uf2.Uf2Error:
                    continue  # still being written
                self.captured.mkdir(parents=True, exist_ok=True)
                self.image = Path(shutil.move(candidate, self.captured / candidate.name))
                shutil.rmtree(self.folder)
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def test_uf2_check_accepts_an_rp2040_image_and_refuses_others(tmp_path: Path) -> None:
    good = flash_uf2.read_uf2(make_uf2(tmp_path / "ok.uf2", bytes(1000)))
    assert (good.blocks, good.payload_bytes, good.start) == (4, 1024, 0x10000000)
    rp2350 = make_uf2(tmp_path / "rp2350.uf2", bytes(600), family=0xE48BFF59)
    with pytest.raises(flash_uf2.Uf2Error, match="RP2350"):
        flash_uf2.read_uf2(rp2350)
    cut = tmp_path / "cut.uf2"
    cut.write_bytes((tmp_path / "ok.uf2").read_bytes()[:1024])
    with pytest.raises(flash_uf2.Uf2Error, match="incomplete"):
        flash_uf2.read_uf2(cut)
    (tmp_path / "notes.txt").write_text("x" * 512)
    with pytest.raises(flash_uf2.Uf2Error, match="not a UF2"):
        flash_uf2.read_uf2(tmp_path / "notes.txt")
    for name in ("stock", "production"):
        try:
            built = flash_uf2.image_path(name)
        except flash_uf2.Uf2Error as exc:
            assert "make firmware" in str(exc)
            continue
        assert flash_uf2.read_uf2(built).family == flash_uf2.RP2040_FAMILY_ID


def test_image_is_copied_to_the_bootsel_drive_which_then_goes_away(tmp_path: Path) -> None:
    uf2 = make_uf2(tmp_path / "smartpdu-rp2.uf2", bytes(range(256)) * 300)
    media = tmp_path / "media" / "electrician"
    drive = FakeDrive(media / "RPI-RP2", tmp_path / "flashed", appear_after=0.5)
    drive.start()
    stages: list[str] = []
    try:
        written = flash_uf2.write_image(
            uf2,
            drive_globs=[str(media / "*")],
            sysfs=tmp_path / "no-usb",
            bootsel_timeout=10,
            progress=lambda stage, done, total, detail: stages.append(stage),
        )
    finally:
        drive.stop()
    assert written.method == "drive" and written.target == str(media / "RPI-RP2")
    assert drive.image is not None and drive.image.read_bytes() == uf2.read_bytes()
    assert not (media / "RPI-RP2").exists()
    assert stages[0] == "bootsel" and "writing" in stages and stages[-1] == "restarting"


def test_a_drive_that_never_goes_away_is_a_clear_error(tmp_path: Path) -> None:
    uf2 = make_uf2(tmp_path / "x.uf2", bytes(512))
    stuck = tmp_path / "RPI-RP2"
    stuck.mkdir()
    (stuck / "INFO_UF2.TXT").write_text(DRIVE_INFO_TEXT)
    with pytest.raises(flash_uf2.Uf2Error, match="still there"):
        flash_uf2.write_image(uf2, drive=stuck, gone_timeout=0.5)
    assert (stuck / "x.uf2").read_bytes() == uf2.read_bytes()


def test_no_bootsel_board_and_picotool_without_usb_say_what_to_do(tmp_path: Path) -> None:
    uf2 = make_uf2(tmp_path / "x.uf2", bytes(512))
    nothing = tmp_path / "sys"
    nothing.mkdir()
    with pytest.raises(flash_uf2.Uf2Error) as none:
        flash_uf2.write_image(uf2, drive_globs=[], sysfs=nothing, bootsel_timeout=0.3)
    assert "BOOTSEL" in str(none.value) and "--drive" in str(none.value)

    # An RP2040 in BOOTSEL mode on USB, its drive not mounted, picotool without libusb.
    device = nothing / "1-1"
    device.mkdir()
    (device / "idVendor").write_text("2e8a\n")
    (device / "idProduct").write_text("0003\n")
    assert flash_uf2.bootsel_devices(nothing) == ["1-1"]
    no_usb = tmp_path / "picotool"
    no_usb.write_text(
        "#!/bin/sh\necho 'This version of picotool was compiled without USB support.'\n"
        "echo 'COMMANDS:'\necho '    info        Display information'\n"
    )
    no_usb.chmod(0o755)
    tool = flash_uf2.find_picotool(str(no_usb))
    assert not tool.usb and "without USB support" in tool.why
    with pytest.raises(flash_uf2.Uf2Error) as usb_only:
        flash_uf2.write_image(
            uf2, drive_globs=[], sysfs=nothing, picotool=tool, bootsel_timeout=0.3
        )
    message = str(usb_only.value)
    assert "2e8a:0003" in message and "without USB support" in message and "mount" in message

    # picotool with USB support: `picotool load -x FILE`.
    log = tmp_path / "picotool.log"
    with_usb = tmp_path / "picotool-usb"
    with_usb.write_text(
        "#!/bin/sh\nif [ \"$1\" = help ]; then echo 'COMMANDS:'; "
        "echo '    load        Load the program'; exit 0; fi\n"
        f'echo "$@" >> {log}\n'
    )
    with_usb.chmod(0o755)
    tool = flash_uf2.find_picotool(str(with_usb))
    assert tool.usb
    written = flash_uf2.write_image(uf2, drive_globs=[], sysfs=nothing, picotool=tool)
    assert written.method == "picotool" and written.target == "1-1"
    assert log.read_text().split() == ["load", "-x", str(uf2)]


def test_the_built_picotool_is_recognised_as_without_usb() -> None:
    require(flash_uf2.PICOTOOL_BUILT.exists(), "picotool is not built (make firmware builds it)")
    tool = flash_uf2.find_picotool(str(flash_uf2.PICOTOOL_BUILT))
    assert not tool.usb and "without USB support" in tool.why


def test_image_options_on_the_command_line(tmp_path: Path) -> None:
    uf2 = make_uf2(tmp_path / "x.uf2", bytes(512))
    assert flash.main(["--image", "production", "--uf2", str(uf2)]) == 2
    assert flash.main(["--bootsel"]) == 2
    assert flash.main(["--uf2", str(uf2), "--board", "pico_mcp3208", "--group", "A"]) == 2
    assert flash.main(["--uf2", str(tmp_path / "missing.uf2")]) == 1
    drive = FakeDrive(tmp_path / "RPI-RP2", tmp_path / "flashed")
    drive.start()
    out = io.StringIO()
    parser = argparse.ArgumentParser()
    flash.add_arguments(parser)
    try:
        args = parser.parse_args(["--uf2", str(uf2), "--drive", str(tmp_path / "RPI-RP2")])
        assert flash.run(args, out=out) == 0, out.getvalue()
    finally:
        drive.stop()
    assert drive.image is not None
    assert "written through drive" in out.getvalue() and "--group" in out.getvalue()
