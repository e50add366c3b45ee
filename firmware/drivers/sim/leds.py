"""The WS2812 output of the sim board: ``firmware.drivers.ws2812.Ws2812`` writes its frame to
the panel instead of a PIO state machine."""


class SimLedOutput:
    """WS2812 output that shows the frame on the panel (words as in ``ws2812.pack``)."""

    def __init__(self, panel):
        self._panel = panel

    def write(self, words):
        self._panel.set_leds(words)
