"""Discovery and addressing messages: DISCOVER, DISCOVER_REPLY, MUTE and ASSIGN."""

from protocol import layouts as L
from protocol.consts import (
    ADDR_BROADCAST,
    ADDR_MASTER,
    ADDR_UNASSIGNED,
    T_ASSIGN,
    T_DISCOVER,
    T_DISCOVER_REPLY,
    T_MUTE,
    UID_LEN,
)
from protocol.errors import FieldError
from protocol.schema import Message, message


@message
class Discover(Message):
    """Unmuted boards whose uid lies in [uid_lo, uid_hi] (big-endian) answer DISCOVER_REPLY."""

    TYPE = T_DISCOVER
    NAME = "Discover"
    LAYOUT = L.DISCOVER
    DEFAULTS = {"uid_lo": b"\x00" * UID_LEN, "uid_hi": b"\xff" * UID_LEN}
    DST = ADDR_BROADCAST
    SRC = ADDR_MASTER
    uid_lo: bytes
    uid_hi: bytes

    def check(self) -> None:
        if self.uid_lo > self.uid_hi:
            raise FieldError("uid_lo <= uid_hi")


@message
class DiscoverReply(Message):
    TYPE = T_DISCOVER_REPLY
    NAME = "DiscoverReply"
    LAYOUT = L.DISCOVER_REPLY
    DST = ADDR_MASTER
    SRC = ADDR_UNASSIGNED
    uid: bytes
    address: int
    board_type: int


@message
class Mute(Message):
    """Mute (1) or unmute (0) discovery replies of the board with ``uid``; uid FF.. = all."""

    TYPE = T_MUTE
    NAME = "Mute"
    LAYOUT = L.MUTE
    DST = ADDR_BROADCAST
    SRC = ADDR_MASTER
    uid: bytes
    mute: bool


@message
class Assign(Message):
    """Give the board with ``uid`` an address (and a group, '' = keep); it ACKs from it."""

    TYPE = T_ASSIGN
    NAME = "Assign"
    LAYOUT = L.ASSIGN
    DEFAULTS = {"group": ""}
    DST = ADDR_BROADCAST
    SRC = ADDR_MASTER
    uid: bytes
    address: int
    group: str
