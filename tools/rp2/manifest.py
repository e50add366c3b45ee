# Frozen-module manifest of the smartPDU production image for the RP2040 (board RPI_PICO):
# MicroPython's own RPI_PICO modules (asyncio, ...) plus protocol/, firmware/ and boards/ as
# the Pico boards import them. Built by tools/rp2build.sh (`make firmware`).
#
# Left out: what only the unix-port simulation or CPython imports (on a Pico nothing imports
# them; freezing them would only cost flash): the sim drivers and board, the load simulator,
# the host CRC and the golden vectors loader. Checked by tests/test_firmware_build.py
# against what boards/pico_mcp3208.py, boards/mains_status.py and firmware/app.py import.
#
# The manifest runs with this file's folder as the working directory; include() and package()
# are the manifest API (tools/manifestfile.py of MicroPython).
# ruff: noqa: F821
# pyright: reportUndefinedVariable=false
import os

include("$(PORT_DIR)/boards/manifest.py")

ROOT = os.path.abspath(os.path.join(os.getcwd(), "..", ".."))
NOT_ON_A_PICO = (
    "boards/sim.py",
    "firmware/drivers/sim/__init__.py",
    "firmware/drivers/sim/adc.py",
    "firmware/drivers/sim/panel.py",
    "firmware/drivers/sim/panel_server.py",
    "firmware/drivers/sim/pins.py",
    "firmware/drivers/sim/uart.py",
    "firmware/drivers/sim/unixport.py",
    "firmware/drivers/sim/watchdog.py",
    "firmware/loadsim.py",
    "protocol/_crc_host.py",
    "protocol/gen.py",
    "protocol/tables.py",
    "protocol/vectors.py",
)


def _sources(package_name):
    found = []
    for folder, _dirs, files in os.walk(os.path.join(ROOT, package_name)):
        for name in files:
            path = os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/")
            if name.endswith(".py") and path not in NOT_ON_A_PICO:
                found.append(os.path.relpath(path, package_name))
    return sorted(found)


for _name in ("protocol", "firmware", "boards"):
    package(_name, files=_sources(_name), base_path=ROOT)
