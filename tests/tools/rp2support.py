"""Shared by the emulated-RP2040 tests: skip with the fix when the emulator is not set up
(fail under ``make test``: ``tests/requirements.py``)."""

from __future__ import annotations

from tests.requirements import missing, require
from tools.rp2emu import PRODUCTION_IMAGE, EmulatorError, check_installed


def need_emulator() -> None:
    """Skip unless node, rp2040js and the production image are there (`make setup` does both)."""
    try:
        check_installed()
    except EmulatorError as exc:
        missing(str(exc))
    require(PRODUCTION_IMAGE.exists(), f"{PRODUCTION_IMAGE.name} is not built: run `make firmware`")
