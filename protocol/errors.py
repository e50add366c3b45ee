"""The protocol's own exception family. Every way a frame can be bad raises a FrameError."""


class FrameError(Exception):
    """A frame, or a field in it, is not valid."""

    code = 0  # the NAK error code a board answers with, 0 = not answerable


class CobsError(FrameError):
    """Stuffing is inconsistent (a code byte points past the end, or a stray zero)."""


class LengthError(FrameError):
    """Frame too short, too long, or a payload length that does not fit its type."""

    code = 3


class CrcError(FrameError):
    """CRC-32 mismatch: the frame was corrupted on the wire."""


class VersionError(FrameError):
    """A protocol version this receiver does not speak (CRC was valid)."""

    code = 1


class UnknownTypeError(FrameError):
    """A message type this receiver does not know (CRC was valid)."""

    code = 2


class FieldError(FrameError):
    """A field value is out of its documented range."""

    code = 4


class ConfigKeyError(FieldError):
    """A config key this receiver does not know."""

    code = 5
