"""An emulated RP2040 group board found by the real aggregator's discovery, reporting in its
slots on the virtual bus (the whole trial under a clock dilated to 0.1 x real time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.rp2support import need_emulator
from tools.rp2emu.trial import LOADS, run_trial

pytestmark = pytest.mark.slow


def test_discovered_by_the_bus_master_and_reporting_its_currents(tmp_path: Path) -> None:
    need_emulator()
    seen = run_trial(6.0, tmp_path / "trial")
    # Discovered by its flash unique ID, given an address, reporting in its slots.
    assert seen["address"] == 1
    assert seen["bus_uid"] == seen["uid"]
    assert seen["reports"] >= 20, seen
    # The currents its MCP3208s were fed, measured by the firmware on the chip.
    for ch, amps in LOADS.items():
        assert abs(seen["currents_a"][str(ch)] - amps) <= 0.01 * amps, seen
    assert seen["resets"] == 0
