"""Serial transport on real pseudo-terminals: data both ways, and errors a user can act on."""

from __future__ import annotations

import asyncio
import os
import pty
import tty

import pytest
import serial

from host.transport import DriverEnable, SerialTransport, TransportError, open_serial


@pytest.fixture
def pty_pair():
    master, slave = pty.openpty()
    tty.setraw(master)
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


async def test_bytes_flow_both_ways(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    got: list[bytes] = []
    transport = SerialTransport(path, 115200, on_data=lambda data, t: got.append(data))
    await transport.open()
    try:
        assert transport.mode is DriverEnable.NONE  # a pty has no kernel RS-485 mode
        await transport.write(b"\x01\x02hello\x00")
        await asyncio.sleep(0.05)
        assert os.read(master, 100) == b"\x01\x02hello\x00"
        os.write(master, b"board says hi")
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.01)
        assert b"".join(got) == b"board says hi"
    finally:
        await transport.close()


def test_missing_port_is_named() -> None:
    with pytest.raises(TransportError, match=r"bus.port /dev/ttyNOPE0: no such device"):
        open_serial("/dev/ttyNOPE0", 115200)


def test_port_in_use_is_explained(pty_pair: tuple[int, str]) -> None:
    _, path = pty_pair
    first = open_serial(path, 115200)
    try:
        with pytest.raises(TransportError, match="in use by another program"):
            open_serial(path, 115200)
    finally:
        first.close()


def test_permission_denied_is_explained(tmp_path, monkeypatch) -> None:
    device = tmp_path / "ttyS9"
    device.write_text("")

    def refuse(*args: object, **kwargs: object) -> None:
        error = serial.SerialException(13, "could not open port: [Errno 13] Permission denied")
        error.__context__ = PermissionError(13, "Permission denied")
        raise error

    monkeypatch.setattr(serial, "Serial", refuse)
    with pytest.raises(TransportError, match=r"permission denied .*dialout"):
        open_serial(str(device), 115200, what="bus")


async def test_kernel_mode_refused_on_pty_with_a_clear_message(pty_pair: tuple[int, str]) -> None:
    _, path = pty_pair
    transport = SerialTransport(path, 115200, driver_enable=DriverEnable.KERNEL)
    with pytest.raises(TransportError, match="kernel RS-485 mode not supported"):
        await transport.open()
    await transport.close()
