"""Shared fixtures: the MicroPython runner is importable as ``tests.mpy``.

Firmware tests on both MicroPython ports: every test of the modules in :data:`BOTH_PORTS`
runs twice, on the 64-bit unix port (``[mpy64]``) and on the 32-bit build (``[mpy32]``,
``build/rp2/out/micropython-32`` from ``make firmware``: the RP2040's pointer width, 31-bit
small ints, ticks wrapping at 2**30). They are the firmware and protocol tests that need no
emulated chip and no 64-bit-only tool (``tests/firmware/test_heap.py`` maps a ROMFS image
with ctypes into the 64-bit port; the 32-bit heap figure is ``smartpdu bench``'s). Together
the ``[mpy32]`` half takes about a minute on 2 cores. ``SMARTPDU_MPY_PORTS=64`` (or ``32``)
keeps one port; without a 32-bit build the ``[mpy32]`` tests are skipped (they fail under
``make test``: see ``tests/requirements.py``).

Marks of :func:`tests.requirements.requires` are checked here as each test is set up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import mpy, requirements  # noqa: E402

BOTH_PORTS = (
    "tests/test_mpy_runner.py",
    "tests/protocol/test_vectors.py",
    "tests/protocol/test_zero_alloc_mpy.py",
    "tests/firmware/test_32bit.py",
    "tests/firmware/test_app_sim.py",
    "tests/firmware/test_drivers.py",
    "tests/firmware/test_loadsim.py",
    "tests/firmware/test_overload.py",
    "tests/firmware/test_panel_logic.py",
    "tests/firmware/test_rms.py",
    "tests/firmware/test_sim_board.py",
    "tests/firmware/test_slave_logic.py",
    "tests/firmware/test_supervisor.py",
    "tests/firmware/test_uart_fuzz.py",
)

# Tests that fail on the 32-bit unix port for a reason the RP2040 does not share (checked on
# the emulated chip): expected to fail there (strict: a pass shows the reason is gone).
MPY32_ONLY_FAILURES = {
    "tests/firmware/test_rms.py::test_per_cycle_hot_path_allocates_nothing": (
        "the i386 native emitter allocates on a viper-to-viper call (_window -> _rms_q9); "
        "the RP2040's Thumb code does not (emulated chip, heap locked)"
    ),
    "tests/firmware/test_drivers.py::"
    "test_mcp3208_stream_dma_ping_pong_without_cpu_and_irq_allocation": (
        "the fake DMA's addresses are i386 heap addresses above 2**30 (big ints); RP2040 "
        "SRAM addresses (0x2000_0000...) are small ints"
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{requirements.MARK}(reason): needs what `make setup` provides; reason None when it "
        "is there (tests.requirements.requires)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    requirements.check_marks(item)


def _ports() -> list[str]:
    wanted = os.environ.get("SMARTPDU_MPY_PORTS", ",".join(mpy.PORTS))
    return [p for p in (w.strip() for w in wanted.split(",")) if p in mpy.PORTS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    path = Path(str(metafunc.definition.path)).resolve()
    if path.is_relative_to(ROOT) and path.relative_to(ROOT).as_posix() in BOTH_PORTS:
        metafunc.parametrize("micropython_port", _ports(), indirect=True, ids=lambda p: f"mpy{p}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("micropython_port") != "32":
            continue
        reason = MPY32_ONLY_FAILURES.get(item.nodeid.split("[", 1)[0])
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture(autouse=True)
def micropython_port(request: pytest.FixtureRequest) -> Iterator[str]:
    """The MicroPython port the test runs on: ``"32"`` or ``"64"`` (the default)."""
    port = getattr(request, "param", "64")
    if port == "64":
        yield port
        return
    requirements.require(
        os.access(mpy.micropython_32_path(), os.X_OK),
        f"{mpy.micropython_32_path()} missing: run `make firmware`",
    )
    # The virtual board (tools.virtual.vboard) starts its own MicroPython: the same port.
    request.getfixturevalue("monkeypatch").setattr(
        "tools.virtual.vboard.micropython_command", mpy.micropython_command
    )
    with mpy.use_port(port):
        yield port
