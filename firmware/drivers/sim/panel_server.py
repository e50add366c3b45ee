"""The sim panel's socket server: :class:`~firmware.drivers.sim.panel.SimPanel` served to
other processes (``tools/virtual/vboard.py``, the panel UI, tests) on a UNIX-domain socket
on which the board listens, speaking JSON lines.

Panel wire format (UTF-8 JSON, one object per line, ``\\n`` terminated)
-----------------------------------------------------------------------
Board -> client, on connect and whenever something changed (at most every
``min_interval_ms``), the whole panel::

    {"uid": "sim-A", "group": "A", "leds": [[r, g, b], ... 12], "display": " 7.3",
     "segments": [0, 0, 135, 79], "brightness": 4, "display_on": true,
     "pressed": [3], "inputs": {"breaker": 1, "alarm": 0, "estop": 0, "neutral": 0},
     "temperature": 25.0}

(``leds`` are the colours on the wire after brightness scaling; ``inputs`` / ``temperature``
only on boards that have them). Every ``heartbeat_ms``: ``{"hb": <ticks_ms>, "wdt": <feeds>}``
(a supervisor that stops seeing ``wdt`` advance plays the watchdog and restarts the board).

Client -> board::

    {"press": 3}                    click monitor button 3 (1-based, as printed), held 120 ms
    {"press": 3, "hold_ms": 1500}   long press
    {"down": 3} / {"up": 3}         hold / release explicitly
    {"input": "estop", "value": 1}  status input active (1) / inactive (0)
    {"temperature": 41.5}           internal temperature, degrees C
    {"load": {...}}                 handed unchanged to the board's load handler (``on_load``)
    {"get": "state"}                send the state line now

A line that is not understood is answered with ``{"error": "<reason>"}``.
"""

import errno
import json
import os
import select
import socket
from time import ticks_diff, ticks_ms

from micropython import const

from firmware.drivers.sim.unixport import AF_UNIX, SOCK_STREAM, unix_address

_MAX_BACKLOG = const(65536)


class _Client:
    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()


class PanelServer:
    """Serves ``panel`` on the UNIX socket ``path``: the state line (written into ``line``,
    the panel's line buffer) when the panel is ``dirty``, the heartbeat, replies to commands."""

    def __init__(self, panel, path, line):
        self.panel = panel
        self.path = path
        self.line = line
        self._clients = []
        self._server = None
        self._server_poll = select.poll()
        self._sent_ms = ticks_ms()
        self._hb_ms = ticks_ms()
        self._chunk = bytearray(256)  # client commands are short JSON lines
        self._listen(path)

    def _listen(self, path):
        try:
            os.remove(path)
        except OSError:
            pass
        server = socket.socket(AF_UNIX, SOCK_STREAM)
        server.bind(unix_address(path))
        server.listen(4)
        server.setblocking(False)
        self._server = server
        self._server_poll.register(server, select.POLLIN)

    @property
    def clients(self):
        return len(self._clients)

    def _send(self, client, obj):
        client.outbuf.extend(json.dumps(obj).encode())
        client.outbuf.extend(b"\n")

    def _write(self, client, n):
        # The first n bytes of the line buffer to one client: straight to its socket when
        # nothing is queued (no allocation), the rest queued for _flush
        line = self.line
        if not client.outbuf:
            try:
                sent = client.sock.write(line, 0, n) or 0
            except OSError:
                self._drop(client)
                return
            if sent == n:
                return
        else:
            sent = 0
        if len(client.outbuf) > _MAX_BACKLOG:
            self._drop(client)
            return
        client.outbuf.extend(memoryview(line)[sent:n])

    def _broadcast_line(self, n):
        clients = self._clients
        i = len(clients)
        while i:  # backwards: a client dropped on the way does not shift the rest
            i -= 1
            self._write(clients[i], n)

    def _drop(self, client):
        if client in self._clients:
            self._clients.remove(client)
        try:
            client.sock.close()
        except OSError:
            pass

    def _accept(self):
        server = self._server
        if server is None:
            return
        ready = False
        for _ in self._server_poll.ipoll(0):
            ready = True  # a client is waiting: accept() will not raise EAGAIN
        if not ready:
            return
        try:
            sock, _ = server.accept()
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return
            raise
        sock.setblocking(False)
        client = _Client(sock)
        self._clients.append(client)
        self._send(client, self.panel.state())

    def _receive(self, client):
        chunk = self._chunk
        while True:
            try:
                n = client.sock.readinto(chunk)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    n = None
                else:
                    self._drop(client)
                    return
            if n is None:
                break
            if n == 0:
                self._drop(client)
                return
            client.inbuf.extend(memoryview(chunk)[:n])
        while client.inbuf:
            end = client.inbuf.find(b"\n")
            if end < 0:
                if len(client.inbuf) > _MAX_BACKLOG:
                    self._drop(client)
                return
            line = bytes(client.inbuf[:end])
            client.inbuf = client.inbuf[end + 1 :]
            if not line.strip():
                continue
            reply = self.panel.handle_line(line)
            if reply is not None:
                self._send(client, reply)

    def _flush(self, client):
        while client.outbuf:
            try:
                n = client.sock.write(client.outbuf)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    n = None
                else:
                    self._drop(client)
                    return
            if not n:
                if len(client.outbuf) > _MAX_BACKLOG:
                    self._drop(client)
                return
            client.outbuf = client.outbuf[n:]

    def poll(self):
        """Serve the socket once: accept, read commands, push state / heartbeat. Non-blocking;
        allocates nothing while no client sends and no output is queued."""
        if self._server is None:
            return
        self._accept()
        clients = self._clients
        i = len(clients)
        while i:
            i -= 1
            self._receive(clients[i])
        now = ticks_ms()
        panel = self.panel
        if panel.dirty and ticks_diff(now, self._sent_ms) >= panel.min_interval_ms:
            panel.dirty = False
            self._sent_ms = now
            if clients:
                self._broadcast_line(panel.state_line())
        if ticks_diff(now, self._hb_ms) >= panel.heartbeat_ms:
            self._hb_ms = now
            if clients:
                self._broadcast_line(panel.heartbeat_line(now))
        i = len(clients)
        while i:
            i -= 1
            if i < len(clients) and clients[i].outbuf:
                self._flush(clients[i])

    def close(self):
        for client in list(self._clients):
            self._drop(client)
        if self._server is not None:
            self._server.close()
            self._server = None
            try:
                os.remove(self.path)
            except OSError:
                pass
