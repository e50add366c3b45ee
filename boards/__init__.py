"""Board definitions: one module per board, each with ``build() -> Board``.

- ``boards.pico_mcp3208``  the group board: Raspberry Pi Pico, two MCP3208, WS2812, TM1637,
  12 buttons, MAX3485 on UART0.
- ``boards.mains_status``  the mains status node: Pico, breaker / E-stop / Neutral contacts,
  internal temperature, MAX3485 on UART0.
- ``boards.sim``           either of them on the MicroPython unix port (sockets instead of
  hardware; see that module for its environment variables).

A board module holds pin numbers and bus settings and constructs drivers; no logic.
"""

from protocol.consts import BUS_BAUD

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any


class Board:
    """What ``build()`` returns. Attributes a board does not have are None.

    ``name``        board module name (``"pico_mcp3208"``, ``"mains_status"``, ``"sim"``)
    ``role``        ``"group"`` (12-channel group board) or ``"mains"`` (mains status node)
    ``uid``         unique id, lowercase hex string (flash id on a Pico)
    ``group``       group letter from the environment (sim), else None (from config)
    ``baud``        RS-485 baud rate
    ``adc``         ``Mcp3208Stream`` / ``SimAdc``: start(), stop(), poll(), await block(),
                    read_channel(n); blocks are array('H') of 13 x samples_per_block values
    ``leds``        ``ws2812.Ws2812``: set(i, r, g, b), fill(), write()
    ``display``     ``tm1637.Display``: show(text), brightness(0..7), power(on)
    ``buttons``     ``buttons.Buttons``: poll(ticks_ms) then pop() events
    ``uart``        the raw port (``machine.UART`` / ``SimUart``)
    ``rs485``       ``rs485.Rs485`` around ``uart`` and the DE pin: what the firmware uses
    ``status``      ``status_inputs.StatusInputs`` (mains role)
    ``temperature`` object with read_c10() (mains role)
    ``wdt``         ``Watchdog`` / ``SimWatchdog``: start(timeout_ms), feed()
    ``config_dir``  directory for persistent config files (created by build())
    ``panel``       ``SimPanel`` (sim only); set ``panel.on_load`` to receive load commands
    ``services``    objects whose ``run()`` coroutine the application starts as tasks
    """

    def __init__(self, name, role="group"):
        self.name = name
        self.role = role
        self.uid = ""
        self.group: "Any" = None
        self.baud = BUS_BAUD
        self.adc: "Any" = None
        self.leds: "Any" = None
        self.display: "Any" = None
        self.buttons: "Any" = None
        self.uart: "Any" = None
        self.rs485: "Any" = None
        self.status: "Any" = None
        self.temperature: "Any" = None
        self.wdt: "Any" = None
        self.config_dir = ""
        self.panel: "Any" = None
        self.services: "list[Any]" = []
