"""Sim board: the group board (or the mains status node) on the MicroPython unix port.

Settings come from keyword arguments of :func:`build`, else the command line
(``--bus PATH`` style, unknown arguments ignored), else the environment, else defaults:

=====================  ==============  ====================================================
environment            argument        meaning (default)
=====================  ==============  ====================================================
SMARTPDU_BUS           ``--bus``       UNIX socket of the virtual RS-485 bus; the board
                                       connects to it (unset: detached UART)
SMARTPDU_PANEL         ``--panel``     UNIX socket path the board listens on for panel
                                       clients, JSON lines (unset: no panel socket)
SMARTPDU_UID           ``--uid``       unique id (``sim-<group>`` or ``sim-mains``)
SMARTPDU_GROUP         ``--group``     group letter A..F (``A``; unused by the mains role)
SMARTPDU_ROLE          ``--role``      ``group`` or ``mains`` (``group``)
SMARTPDU_CONFIG_DIR    ``--config``    config directory ("flash") (``var/sim/<uid>``)
SMARTPDU_BAUD          ``--baud``      bus baud rate for TX timing (115200)
=====================  ==============  ====================================================

The ADC is fed by ``generator`` (anything with ``fill(buf, start, count)`` such as
``firmware.loadsim.LoadSim``; None = no load, set ``board.adc.generator`` later to attach
one), one sample instant every ``SAMPLE_PERIOD_NS``. Load-control messages from the panel
socket go to ``board.panel.on_load``. The application must start ``board.services``
(the panel server) as asyncio tasks, or call ``board.panel.poll()`` itself.
"""

import os
import sys

from protocol.consts import BUS_BAUD

BAUD = BUS_BAUD
SAMPLES_PER_BLOCK = 64
SAMPLE_PERIOD_NS = 312_000  # = firmware.rms.SAMPLE_US: 3205.1 samples/s per channel
LED_COUNT = 12
BUTTON_COUNT = 12

_OPTIONS = (
    ("bus", "SMARTPDU_BUS"),
    ("panel", "SMARTPDU_PANEL"),
    ("uid", "SMARTPDU_UID"),
    ("group", "SMARTPDU_GROUP"),
    ("role", "SMARTPDU_ROLE"),
    ("config", "SMARTPDU_CONFIG_DIR"),
    ("baud", "SMARTPDU_BAUD"),
)


def settings(argv=None, **overrides):
    """Resolve the settings table above into a dict (keys: the argument names)."""
    if argv is None:
        argv = sys.argv[1:]
    found = {}
    for name, env in _OPTIONS:
        value = overrides.get(name)
        if value is None:
            flag = "--" + name
            for i in range(len(argv) - 1):
                if argv[i] == flag:
                    value = argv[i + 1]
        if value is None:
            value = os.getenv(env)
        found[name] = value
    role = found["role"] or "group"
    if role not in ("group", "mains"):
        raise ValueError("role must be group or mains")
    found["role"] = role
    found["group"] = found["group"] or "A"
    if not found["uid"]:
        found["uid"] = "sim-mains" if role == "mains" else "sim-" + found["group"]
    if not found["config"]:
        found["config"] = "var/sim/" + found["uid"]
    found["baud"] = int(found["baud"] or BAUD)
    return found


def build(argv=None, generator=None, **overrides):
    from boards import Board
    from firmware.drivers.buttons import Buttons
    from firmware.drivers.rs485 import Rs485
    from firmware.drivers.sim.adc import SimAdc
    from firmware.drivers.sim.panel import SimPanel
    from firmware.drivers.sim.pins import SimPin
    from firmware.drivers.sim.uart import SimUart
    from firmware.drivers.sim.unixport import ensure_dir
    from firmware.drivers.sim.watchdog import SimWatchdog
    from firmware.drivers.tm1637 import Display
    from firmware.drivers.ws2812 import Ws2812

    conf = settings(argv, **overrides)
    role = conf["role"]
    board = Board("sim", role)
    board.uid = conf["uid"]
    board.group = conf["group"] if role == "group" else None
    board.baud = conf["baud"]
    if role == "group":
        panel = SimPanel(conf["panel"], uid=board.uid, group=conf["group"], n_leds=LED_COUNT)
        board.adc = SimAdc(
            generator, samples_per_block=SAMPLES_PER_BLOCK, sample_period_ns=SAMPLE_PERIOD_NS
        )
        board.leds = Ws2812(panel.led_output(), LED_COUNT)
        board.display = Display(panel.display_wire())
        board.buttons = Buttons(panel.button_pins)
    else:
        from firmware.drivers.status_inputs import NAMES, SimTemperature, StatusInputs

        panel = SimPanel(
            conf["panel"], uid=board.uid, group="", n_leds=0, n_buttons=0, inputs=NAMES
        )
        board.status = StatusInputs(panel.input_pins)
        board.temperature = SimTemperature()
        panel.temperature = board.temperature
    board.panel = panel
    board.services = [panel]
    board.uart = SimUart(conf["bus"], baud=board.baud, name=board.uid)
    board.rs485 = Rs485(board.uart, SimPin(0), baud=board.baud)
    board.config_dir = ensure_dir(conf["config"])
    board.wdt = SimWatchdog(marker=board.config_dir + "/wdt-reset")
    panel.wdt = board.wdt
    return board
