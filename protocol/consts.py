"""Protocol constants. Values are the wire format: never renumber, only add."""

try:
    from micropython import const  # pyright: ignore[reportMissingImports, reportAssignmentType]
except ImportError:  # CPython (the aggregator)

    def const(expr: int) -> int:
        return expr


# Version 1. Byte 0 of every header is the version in every version of the protocol.
VERSION = const(1)

# Addresses. The aggregator (the only master) is 0; boards get 1..239 assigned by the master.
ADDR_MASTER = const(0x00)
ADDR_FIRST_BOARD = const(0x01)
ADDR_LAST_BOARD = const(0xEF)
ADDR_UNASSIGNED = const(0xFE)  # source address of a board that has no address yet
ADDR_BROADCAST = const(0xFF)

# Frame geometry (unstuffed "raw" frame = header + payload + CRC-32).
HEADER_LEN = const(5)  # version, dst, src, type, seq
CRC_LEN = const(4)
MAX_RAW = const(250)  # keeps COBS to one code byte per frame (<= 254 data bytes)
MAX_PAYLOAD = const(241)  # MAX_RAW - HEADER_LEN - CRC_LEN
MIN_RAW = const(9)  # HEADER_LEN + CRC_LEN
MAX_WIRE = const(252)  # 1 COBS code byte + MAX_RAW + delimiter
DELIMITER = const(0x00)

# Message types.
T_POLL = const(0x01)  # master -> board: answer with the requested message type
T_SYNC = const(0x02)  # master -> broadcast: start of a report cycle (TDMA)
T_REPORT = const(0x10)  # board -> master: compact per-cycle currents and states
T_TELEMETRY = const(0x11)  # board -> master: full telemetry and board health
T_STATUS = const(0x12)  # mains status node -> master
T_GET_INFO = const(0x20)
T_INFO = const(0x21)
T_CONFIG_GET = const(0x30)
T_CONFIG_VALUE = const(0x31)
T_CONFIG_SET = const(0x32)
T_IDENTIFY = const(0x40)
T_DISCOVER = const(0x50)  # broadcast: boards whose uid is in [lo, hi] and not muted answer
T_DISCOVER_REPLY = const(0x51)
T_MUTE = const(0x52)
T_ASSIGN = const(0x53)
T_ACK = const(0x7E)
T_NAK = const(0x7F)

# NAK error codes.
E_BAD_VERSION = const(1)
E_UNKNOWN_TYPE = const(2)
E_BAD_LENGTH = const(3)
E_BAD_VALUE = const(4)
E_UNKNOWN_KEY = const(5)
E_STORAGE = const(6)
E_BUSY = const(7)
E_NOT_SUPPORTED = const(8)

# Channel states (TELEMETRY nibbles, firmware classifier).
ST_OFF = const(0)  # no load
ST_OK = const(1)  # load within rating
ST_SLIGHT = const(2)  # slight overload (red slow flash)
ST_SERIOUS = const(3)  # serious overload (red rapid flash)
ST_TRIPPED = const(4)  # current collapsed right after an overload: RCBO probably tripped
STATE_CLIP = const(0x08)  # nibble bit: the channel's ADC clipped during the window

# REPORT alarm codes (2 bits per channel).
AL_NORMAL = const(0)  # OFF when the current is 0, else OK
AL_SLIGHT = const(1)
AL_SERIOUS = const(2)
AL_TRIPPED = const(3)
REPORT_MAX_CENTIAMPS = const(12278)  # 122.78 A: the largest current a REPORT carries
REPORT_OVER_RANGE = const(0x3FFF)  # decoded value of the over-range code

# Board flags (TELEMETRY byte 0, INFO flags).
F_CONFIG_DEFAULTS = const(0x01)  # config file missing or corrupt: safe defaults in use
F_CLIPPING = const(0x02)  # some channel clipped in the last window
F_IDENTIFY = const(0x04)  # identify (blink) active
F_NO_VREF = const(0x08)  # no voltage reference: using the broadcast mains frequency
F_WATCHDOG_RESET = const(0x10)  # last reset was by the watchdog
F_TASK_RESTARTED = const(0x20)  # a firmware task crashed and was restarted

# Telemetry value sentinels.
CENTIAMPS_INVALID = const(0xFFFF)
TTT_UNKNOWN = const(0xFFFF)  # time to trip in 0.1 s: unknown / beyond range

# Board types (INFO, DISCOVER_REPLY).
BOARD_PICO_MCP3208 = const(1)
BOARD_SIM = const(2)
BOARD_MAINS_STATUS = const(3)
BOARD_MAINS_STATUS_SIM = const(4)

# STATUS input bits and trip causes.
IN_BREAKER_CLOSED = const(0x01)
IN_BREAKER_TRIPPED = const(0x02)  # MCCB alarm (trip) contact
IN_ESTOP = const(0x04)  # Emergency Stop pressed
IN_NEUTRAL_LOST = const(0x08)  # loss-of-Neutral relay operated
IN_TEMP_FAULT = const(0x10)
CAUSE_NONE = const(0)
CAUSE_OVERLOAD = const(1)
CAUSE_NEUTRAL_LOST = const(2)
CAUSE_ESTOP = const(3)
CAUSE_UNKNOWN = const(4)

# Config keys (CONFIG_GET / CONFIG_VALUE / CONFIG_SET).
K_GROUP = const(0x01)  # u8 ASCII 'A'..'F'
K_ADDRESS = const(0x02)  # u8 1..239
K_MAINS_HZ = const(0x03)  # u8 50 or 60 (nominal)
K_CAL_GAIN = const(0x04)  # index = channel; u32 gain in ppm 500000..2000000
K_RATING = const(0x05)  # u16 rating in 10 mA, 100..6300
K_CURVE = const(0x06)  # u8 n (2..10), n x (u16 percent, u32 tmin_ms, u32 tmax_ms)
K_NOISE_FLOOR = const(0x07)  # u16 mA, 0..2000

# The bus line (8N1: a character is 10 bits on the wire) and the PDU's shape, shared by the
# boards, the aggregator and the tools.
BUS_BAUD = const(115200)  # default bus rate
BUS_BAUD_MAX = const(1_000_000)
BITS_PER_CHAR = const(10)
GROUP_LETTERS = "ABCDEF"  # one group board per letter
CHANNELS = const(12)  # outputs (channels) per group board
UID_LEN = const(8)
MAX_CURVE_POINTS = const(10)
