"""The virtual USB board, driven by the real ``mpremote`` (CLI and Python API) and pyserial."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from mpremote.transport_serial import SerialTransport

from tools.field.usbboard import VirtualUsbBoard

REPO_ROOT = Path(__file__).resolve().parents[3]


def mpremote(port: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    beside = Path(sys.executable).parent / "mpremote"
    command = [str(beside)] if beside.exists() else [sys.executable, "-m", "mpremote"]
    return subprocess.run(
        [*command, "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_until(port: serial.Serial, marker: bytes, timeout: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data and time.monotonic() < deadline:
        data += port.read(port.in_waiting or 1)
    assert marker in data, f"no {marker!r} within {timeout} s; got {data[-500:]!r}"
    return data


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualUsbBoard]:
    with VirtualUsbBoard(tmp_path / "flash", env={"SMARTPDU_BUS": "/tmp/none.sock"}) as b:
        yield b


def test_exec_and_eval_through_mpremote(board: VirtualUsbBoard) -> None:
    done = mpremote(board.port, "exec", "print('hello', 6 * 7)", "eval", "1 + 2")
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.splitlines() == ["hello 42", "3"]


def test_fs_cp_ls_sha256_land_in_the_sandbox_only(board: VirtualUsbBoard, tmp_path: Path) -> None:
    local = tmp_path / "module.py"
    local.write_bytes(b"VALUE = 1234\n" + b"# padding\n" * 300)
    flash = board.sandbox
    done = mpremote(
        board.port, "fs", "mkdir", ":/lib", "+", "fs", "cp", str(local), ":/lib/module.py"
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert (flash / "lib/module.py").read_bytes() == local.read_bytes()
    assert not Path("/lib/module.py").exists()

    listing = mpremote(board.port, "fs", "ls", ":/lib")
    assert listing.returncode == 0, listing.stderr
    assert f"{local.stat().st_size} module.py" in " ".join(listing.stdout.split())

    digest = mpremote(board.port, "fs", "sha256sum", ":/lib/module.py")
    assert digest.returncode == 0, digest.stderr
    assert hashlib.sha256(local.read_bytes()).hexdigest() in digest.stdout

    # /lib is on sys.path, as on a board; the copy back to the host is identical.
    back = tmp_path / "back.py"
    done = mpremote(
        board.port, "exec", "import module; print(module.VALUE)", "fs", "cp", ":lib/module.py",
        str(back),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1234" in done.stdout
    assert back.read_bytes() == local.read_bytes()

    done = mpremote(board.port, "fs", "rm", ":/lib/module.py", "+", "fs", "ls", ":/lib")
    assert done.returncode == 0, done.stderr
    assert not (flash / "lib/module.py").exists()


def test_soft_reset_prints_soft_reboot_and_reruns_boot_py(board: VirtualUsbBoard) -> None:
    (board.sandbox / "boot.py").write_text(
        "with open('/boots.txt', 'a') as f:\n    f.write('x')\nprint('boot.py ran')\n"
    )
    # mpremote soft-resets in the raw REPL before its first command (enter_raw_repl).
    done = mpremote(board.port, "soft-reset", "exec", "print(open('/boots.txt').read())")
    assert done.returncode == 0, done.stderr + done.stdout
    assert b"MPY: soft reboot\r\n" in board.transcript
    boots = len((board.sandbox / "boots.txt").read_text())
    assert boots >= 1

    with serial.Serial(board.port, timeout=0.2) as port:
        port.write(b"\x02")  # friendly REPL
        read_until(port, b">>> ")
        time.sleep(0.2)
        port.reset_input_buffer()
        port.write(b"\x04")  # Ctrl-D at the friendly prompt
        text = read_until(port, b">>> ")
        assert b"MPY: soft reboot\r\n" in text
        assert b"boot.py ran" in text
        assert text.index(b"soft reboot") < text.index(b"boot.py ran") < text.index(b">>> ")

    # The Python API mpremote is built on: the raw REPL soft reset protocol.
    transport = SerialTransport(board.port, baudrate=115200)
    try:
        transport.enter_raw_repl(soft_reset=True)
        assert transport.eval("1 + 1") == 2
        assert (
            transport.exec("print(len(open('/boots.txt').read()))").strip()
            == str(boots + 2).encode()
        )
        transport.exit_raw_repl()
    finally:
        transport.close()
    assert board.soft_resets >= 3


def test_main_py_runs_at_boot_and_ctrl_c_interrupts_it(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(
        "import time\nprint('main.py running')\nticks = 0\n"
        "while True:\n    ticks += 1\n    time.sleep(0.01)\n"
    )
    with VirtualUsbBoard(flash) as board, serial.Serial(board.port, timeout=0.2) as port:
        # Output before the port was opened is not replayed; reset the board while connected.
        board.hard_reset()
        read_until(port, b"main.py running")
        time.sleep(0.3)
        port.write(b"\x03")
        text = read_until(port, b">>> ")
        assert b"KeyboardInterrupt" in text
        port.write(b"print('ticks', ticks > 0)\r")  # main.py's globals stay, as on a board
        assert b"ticks True" in read_until(port, b"ticks True")

        # Soft reset from the friendly REPL runs main.py again.
        port.write(b"\x04")
        read_until(port, b"main.py running")
        # mpremote interrupts main.py and works; its raw-REPL soft reset skips main.py.
        port.close()
        done = mpremote(board.port, "exec", "print('ticks' in globals())")
        assert done.returncode == 0, done.stderr + done.stdout
        assert done.stdout.strip() == "False"


def test_ctrl_c_interrupts_code_run_from_the_raw_repl(board: VirtualUsbBoard) -> None:
    transport = SerialTransport(board.port, baudrate=115200)
    try:
        transport.enter_raw_repl(soft_reset=False)
        transport.exec_raw_no_follow("import time\nwhile True:\n    time.sleep(0.01)\n")
        time.sleep(0.3)
        transport.serial.write(b"\x03")
        out, err = transport.follow(timeout=10)
        assert b"KeyboardInterrupt" in err
        assert transport.eval("'still alive'") == "still alive"
        # Code that disabled Ctrl-C reads 0x03 as data.
        transport.exec_raw_no_follow(
            "import micropython, sys\nmicropython.kbd_intr(-1)\n"
            "print(sys.stdin.buffer.read(3))\nmicropython.kbd_intr(3)\n"
        )
        transport.serial.write(b"a\x03b")
        out, err = transport.follow(timeout=10)
        assert out.strip() == b"b'a\\x03b'", (out, err)
        transport.exit_raw_repl()
    finally:
        transport.close()


def test_environment_and_flash_root(board: VirtualUsbBoard) -> None:
    done = mpremote(
        board.port,
        "exec",
        "import os, sys\nprint(os.getenv('SMARTPDU_BUS'))\nprint(os.getcwd())\nprint(sys.path)",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["/tmp/none.sock", "/", "['', '.frozen', '/lib']"]


def test_command_line_with_a_stable_link(tmp_path: Path) -> None:
    link = tmp_path / "board-a"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.field.usbboard",
            str(tmp_path / "flash"),
            "--link",
            str(link),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert os.path.realpath(link) == info["port"]
        done = mpremote(str(link), "exec", "print(open('/x.txt', 'w').write('hi'))")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "flash/x.txt").read_text() == "hi"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    assert not link.exists()


def test_connecting_while_the_board_is_still_starting(tmp_path: Path) -> None:
    # Ctrl-C reaching the interpreter's host process before MicroPython runs must not kill it.
    for attempt in range(3):
        with VirtualUsbBoard(tmp_path / f"flash{attempt}") as board:
            transport = SerialTransport(board.port, baudrate=115200)
            try:
                transport.enter_raw_repl(soft_reset=True)
                assert transport.eval("6 * 7") == 42
            finally:
                transport.close()


def test_output_while_nobody_has_the_port_open_is_dropped(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(
        "import time\nfor i in range(100000):\n    print('line', i)\n    time.sleep(0.001)\n"
    )
    with VirtualUsbBoard(flash) as board:
        time.sleep(1.5)  # the board talks to nobody, like a board whose port is closed
        assert b"line 10\n" in board.transcript
        with serial.Serial(board.port, timeout=0.5) as port:
            first = read_until(port, b"\n")
            later = read_until(port, b"line", timeout=5)
        assert b"line 10\n" not in first + later
