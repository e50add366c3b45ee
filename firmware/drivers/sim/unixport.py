"""What the simulated drivers need of the unix port: UNIX-domain socket addresses and the
config directory that stands for the board's flash."""

import errno
import os
import socket
import struct

AF_UNIX = socket.AF_UNIX  # pyright: ignore[reportAttributeAccessIssue]
SOCK_STREAM = socket.SOCK_STREAM  # pyright: ignore[reportAttributeAccessIssue]


def unix_address(path):
    """``struct sockaddr_un`` for ``path`` (the unix port's sockets take raw addresses)."""
    return struct.pack("H", AF_UNIX) + path.encode() + b"\x00"


def ensure_dir(path):
    """Create ``path`` and its parents if missing; return it (the sim board's "flash")."""
    parts = path.split("/")
    current = "/" if path.startswith("/") else ""
    for part in parts:
        if not part:
            continue
        current = current + part if current in ("", "/") else current + "/" + part
        try:
            os.mkdir(current)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
    return path
