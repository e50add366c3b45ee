"""The production image's frozen set (``tools/rp2/manifest.py``) and ``make firmware``'s outputs.

The manifest leaves out what only the unix-port simulation or CPython imports. A Pico must
still find every module its code imports: checked here from the sources (every import, also
those inside functions, of every frozen module). The built images are checked when
``make firmware`` has made them (``build/rp2/out``).
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

from tests.requirements import requires

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tools" / "rp2" / "manifest.py"
OUT = ROOT / "build" / "rp2" / "out"
PACKAGES = ("protocol", "firmware", "boards")
# Frozen modules that import a left-out module where a Pico never goes: ``GroupBoardApp``
# imports the load simulator when ``board.name == "sim"`` and in the sim panel's load handler;
# ``protocol.crc`` the host CRC on CPython only.
SIM_ONLY_IMPORTS = {
    ("firmware/app.py", "firmware.loadsim"),
    ("protocol/crc.py", "protocol._crc_host"),
}


def not_on_a_pico() -> set[str]:
    tree = ast.parse(MANIFEST.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NOT_ON_A_PICO":
            return set(ast.literal_eval(node.value))
    raise AssertionError("NOT_ON_A_PICO missing from the manifest")


def sources() -> list[str]:
    return sorted(
        p.relative_to(ROOT).as_posix()
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def module_file(name: str) -> str | None:
    base = name.replace(".", "/")
    for candidate in (base + ".py", base + "/__init__.py"):
        if (ROOT / candidate).exists():
            return candidate
    return None


def imported_modules(path: str) -> set[str]:
    """Project modules ``path`` imports anywhere (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            names += [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and module_file(name) is not None:
                found.add(name)
    return found


def test_the_frozen_set_holds_everything_a_pico_imports() -> None:
    left_out = not_on_a_pico()
    assert left_out <= set(sources()), "the manifest names files that do not exist"
    frozen = [p for p in sources() if p not in left_out]
    assert {"boards/pico_mcp3208.py", "boards/mains_status.py", "firmware/app.py"} <= set(frozen)
    for path in frozen:
        for name in imported_modules(path):
            target = module_file(name)
            if target in left_out:
                assert (path, name) in SIM_ONLY_IMPORTS, f"{path} imports {name}: not frozen"


def test_the_sim_only_imports_are_on_sim_paths() -> None:
    # firmware/app.py imports the load simulator only for the sim board
    text = (ROOT / "firmware" / "app.py").read_text()
    before = text.split("from firmware.loadsim import LoadSim", 1)[0].rsplit("\n", 3)[-3:]
    assert any('board.name == "sim"' in line for line in before)


def uf2_payload(path: Path) -> bytes:
    """The flash contents of a UF2 file (512-byte blocks, payload size at offset 16)."""
    data = path.read_bytes()
    out = bytearray()
    for i in range(0, len(data), 512):
        block = data[i : i + 512]
        size = int.from_bytes(block[16:20], "little")
        out += block[32 : 32 + size]
    return bytes(out)


@requires((OUT / "smartpdu-rp2.uf2").exists(), "smartpdu-rp2.uf2 is not built: run `make firmware`")
def test_production_image_freezes_the_firmware_and_not_the_sim() -> None:
    flash = uf2_payload(OUT / "smartpdu-rp2.uf2")
    stock = uf2_payload(OUT / "firmware-stock.uf2")
    for name in ("firmware/app.py", "firmware/rms.py", "boards/pico_mcp3208.py",
                 "protocol/messages.py", "asyncio/core.py"):  # fmt: skip
        assert name.encode() in flash
    for name in not_on_a_pico():
        assert name.encode() not in flash
    assert b"firmware/app.py" not in stock
    assert len(stock) < len(flash) < 2 * 1024 * 1024  # the Pico's 2 MB flash


@requires((OUT / "micropython-32").exists(), "micropython-32 is not built: run `make firmware`")
def test_micropython_32_is_a_32bit_port_that_maps_a_romfs_image() -> None:
    binary = OUT / "micropython-32"
    assert binary.read_bytes()[4] == 1  # ELFCLASS32
    assert b"SMARTPDU_ROMFS_FILE" in binary.read_bytes()  # unix-romfs-mmap.diff applied
    done = subprocess.run(
        [str(binary), "-c", "import sys, time; print(sys.maxsize, time.ticks_add(0, -1))"],
        capture_output=True, text=True, timeout=30, check=True,
        env=dict(os.environ, MICROPYPATH=""),
    )  # fmt: skip
    assert done.stdout.split() == [str(2**31 - 1), str(2**30 - 1)]
