"""What one group board knows about its 12 channels, in preallocated buffers.

The RMS engine and overload classifier write it once per mains cycle; the RS-485 slave, the
front panel and the debug console read it. Nothing here is reallocated after start-up.
"""

from array import array

from protocol.consts import CHANNELS


class Measurements:
    def __init__(self) -> None:
        self.centiamps = array("H", bytes(2 * CHANNELS))  # RMS current, 10 mA
        self.states = bytearray(CHANNELS)  # ST_* | STATE_CLIP
        self.crest_x10 = bytearray(CHANNELS)  # crest factor, 0.1 units
        self.ttt_ds = array("H", bytes(2 * CHANNELS))  # time to trip, 0.1 s
        self.windows = 0  # RMS windows computed (wraps at 16 bits on the wire)
        self.freq_centihz = 5000  # mains frequency the window uses
        self.flags = 0  # board flags (protocol.consts F_*)
