"""Shared by the emulated-RP2040 tests: skip with the fix when the emulator is not set up."""

from __future__ import annotations

import pytest

from tools.rp2emu import PRODUCTION_IMAGE, EmulatorError, check_installed


def need_emulator() -> None:
    """Skip unless node, rp2040js and the production image are there (`make setup` does both)."""
    try:
        check_installed()
    except EmulatorError as exc:
        pytest.skip(str(exc))
    if not PRODUCTION_IMAGE.exists():
        pytest.skip(f"{PRODUCTION_IMAGE.name} is not built: run `make firmware`")
