"""An emulated RP2040 group board found by the real aggregator's discovery, reporting in its
slots on the virtual bus (the whole trial under a clock dilated to 0.1 x real time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.rp2emu import PRODUCTION_IMAGE, EmulatorError, check_installed
from tools.rp2emu.trial import LOADS, run_trial

pytestmark = pytest.mark.slow


def test_discovered_by_the_bus_master_and_reporting_its_currents(tmp_path: Path) -> None:
    try:
        check_installed()
    except EmulatorError as exc:
        pytest.skip(str(exc))
    if not PRODUCTION_IMAGE.exists():
        pytest.skip(f"{PRODUCTION_IMAGE.name} is not built: run `make firmware`")
    seen = run_trial(6.0, tmp_path / "trial")
    # Discovered by its flash unique ID, given an address, reporting in its slots.
    assert seen["address"] == 1
    assert seen["bus_uid"] == seen["uid"]
    assert seen["reports"] >= 20, seen
    # The currents its MCP3208s were fed, measured by the firmware on the chip.
    for ch, amps in LOADS.items():
        assert abs(seen["currents_a"][str(ch)] - amps) <= 0.01 * amps, seen
    assert seen["resets"] == 0
