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


async def test_reads_are_coalesced_while_bytes_flow_and_a_quiet_line_is_not_eof(
    pty_pair: tuple[int, str],
) -> None:
    # While bytes keep coming the transport reads on a 2 ms timer (fewer wake-ups); when the
    # line goes quiet it waits for the next byte again. A quiet line must not look like an
    # unplugged adapter (a tty read with nothing waiting returns b"").
    master, path = pty_pair
    got: list[bytes] = []
    transport = SerialTransport(path, 115200, on_data=lambda data, t: got.append(data))
    await transport.open()
    try:
        sent = b""
        for burst in range(5):
            for k in range(20):  # a byte every ~0.5 ms for 10 ms
                chunk = bytes([burst * 20 + k])
                os.write(master, chunk)
                sent += chunk
                await asyncio.sleep(0.0005)
            await asyncio.sleep(0.05)  # quiet line between bursts
        for _ in range(100):
            if len(b"".join(got)) == len(sent):
                break
            await asyncio.sleep(0.01)
        assert b"".join(got) == sent and not transport.lost
        assert len(got) < len(sent)  # several bytes per read
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
