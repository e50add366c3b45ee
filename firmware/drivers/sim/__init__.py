"""Unix-port counterparts of the board drivers: the same interfaces, simulated hardware.

Used by ``boards/sim.py`` so the real firmware runs on the MicroPython unix port, one module
per driver as in ``firmware/drivers/``:

- ``uart`` - :class:`SimUart`, the RS-485 UART as a client of the virtual bus's socket.
- ``adc`` - :class:`SimAdc`, the acquisition API of ``Mcp3208Stream`` fed by a load generator.
- ``panel`` - :class:`SimPanel`, LEDs, display, buttons, status inputs and temperature of the
  front panel, as JSON lines; ``panel_server`` serves it on a UNIX-domain socket (wire format
  there); ``SimLedOutput`` / ``SimDisplayWire``, the WS2812 output and TM1637 wire, draw on
  it (in the same module: each module costs the sim board's heap about 0.5 KB).
- ``pins`` - :class:`SimPin`, :class:`SimButtonPin` (pressed from the panel).
- ``watchdog`` - :class:`SimWatchdog`, ends the process when not fed, as a WDT resets a board.
- ``unixport`` - UNIX socket addresses and :func:`ensure_dir` (the "flash" config directory).

None of these is frozen into the RP2040 image (``tools/rp2/manifest.py``).
"""
