"""The TM1637 wire of the sim board: ``firmware.drivers.tm1637.Display`` shows its segments
on the panel instead of clocking them out."""


class SimDisplayWire:
    """TM1637 wire that shows the display on the panel."""

    def __init__(self, panel):
        self._panel = panel

    def write(self, segments, level, on, text=None):
        self._panel.set_display(segments, level, on, text)
        return True
