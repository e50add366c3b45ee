"""The MicroPython runner itself: real unix port, failures surface as test failures."""

from __future__ import annotations

import pytest

from tests.mpy import current_port, run_micropython


def test_runs_real_micropython() -> None:
    out = run_micropython("import sys\nprint(sys.implementation.name)")
    assert out.strip() == "micropython"


def test_project_packages_are_importable() -> None:
    out = run_micropython("import protocol, firmware, boards\nprint('ok')")
    assert out.strip() == "ok"


def test_exception_becomes_failure() -> None:
    with pytest.raises(pytest.fail.Exception, match="ZeroDivisionError"):
        run_micropython("1/0")


def test_nonzero_exit_becomes_failure() -> None:
    with pytest.raises(pytest.fail.Exception, match="exited 3"):
        run_micropython("import sys\nsys.exit(3)")


def test_runs_on_the_selected_port() -> None:
    # tests/conftest.py runs this module on both ports: the 32-bit build has the RP2040's
    # 31-bit small ints and ticks period
    out = run_micropython("import sys, time\nprint(sys.maxsize, time.ticks_add(0, -1))")
    bits = 32 if current_port() == "32" else 64
    assert out.split() == [str(2 ** (bits - 1) - 1), str(2 ** (bits - 2) - 1)]
