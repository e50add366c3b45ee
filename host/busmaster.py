"""Bus master: finds the boards on the RS-485 bus, gives them addresses, and runs the
report cycle.

Superframe (see protocol/PROTOCOL.md, "Timing")::

    SYNC | lead | round 1: REPORT REPORT ... | ... | round R: REPORT ... | TELEMETRY (detail)
         | [STATUS poll] | [maintenance]

- One SYNC starts ``rounds`` report cycles: every online group board has a REPORT slot in
  every round, timed by the board from the end of the SYNC, so rounds follow each other with
  no request and no gap but the slot guard. The master rotates one board per superframe into
  the detail slot, where it sends its full TELEMETRY; every other superframe the detail slot
  goes to a board reporting an overload, so time-to-trip figures stay fresh.
- Offline boards are left out of the slot mask (a dead board costs no bus time) and probed
  with a POLL in the maintenance step, one per cycle, so a returning board is back in well
  under a second.
- The maintenance step also runs discovery for hot-plugged boards, INFO requests and config
  pushes — one request per cycle, so a slow or dead board never stalls the reports of others.

All bus I/O is in one asyncio task; frames arrive through ``SerialTransport.on_data``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from protocol import consts as C
from protocol import layouts as L
from protocol.consts import BUS_BAUD
from protocol.errors import FrameError
from protocol.framing import FrameReader
from protocol.messages import (
    Assign,
    ConfigSet,
    Discover,
    DiscoverReply,
    GetInfo,
    Info,
    Message,
    Mute,
    Nak,
    Poll,
    Report,
    Status,
    Sync,
    Telemetry,
    encode,
    message_from_reader,
)

_LOG = logging.getLogger(__name__)

GROUP_BOARD_TYPES = (C.BOARD_PICO_MCP3208, C.BOARD_SIM)
STATUS_BOARD_TYPES = (C.BOARD_MAINS_STATUS, C.BOARD_MAINS_STATUS_SIM)
_ALL_UIDS = b"\xff" * C.UID_LEN
_MAX_GUARD_US = 6000
_GUARD_STEP_US = 250
_DETAIL_GRACE_S = 0.01
_OFFLINE_CHECK_S = 0.1


@dataclass
class LinkQuality:
    frames_ok: int = 0
    crc_errors: int = 0  # bad frames that arrived inside this board's slot
    timeouts: int = 0  # slots or requests left unanswered
    latency_ms: float = 0.0  # smoothed: slot start (or request end) -> frame end

    def note_latency(self, ms: float) -> None:
        self.latency_ms = ms if self.latency_ms == 0.0 else 0.9 * self.latency_ms + 0.1 * ms


@dataclass
class BoardLink:
    """What the master knows about one board on the bus."""

    uid: bytes
    address: int
    board_type: int
    group: str = ""
    online: bool = False
    last_seen: float = 0.0
    info: Info | None = None
    quality: LinkQuality = field(default_factory=LinkQuality)
    config_pushed: bool = False
    alarming: bool = False  # its last REPORT showed an overload (SLIGHT or SERIOUS)

    @property
    def is_group_board(self) -> bool:
        return self.board_type in GROUP_BOARD_TYPES

    @property
    def fw_version(self) -> tuple[int, int, int] | None:
        return None if self.info is None else tuple(self.info.fw_version)  # type: ignore[return-value]


class BusListener(Protocol):
    """What the master tells the layer above (the unit state)."""

    def board_online(self, link: BoardLink) -> None: ...
    def board_offline(self, link: BoardLink) -> None: ...
    def board_info(self, link: BoardLink, info: Info) -> None: ...
    def report(self, link: BoardLink, report: Report, received_at: float) -> None: ...
    def telemetry(self, link: BoardLink, telemetry: Telemetry, received_at: float) -> None: ...
    def status(self, link: BoardLink, status: Status, received_at: float) -> None: ...


@dataclass(frozen=True)
class CycleSettings:
    baud: int = BUS_BAUD
    guard_us: int = 100  # slot margin for the boards' timing jitter (widened on collisions)
    rounds: int = 12  # report cycles per SYNC
    lead_us: int = 4000  # SYNC end -> first slot: time for the boards to get ready
    # No frame for this long -> offline. Above two superframes (a lost SYNC must not flap a
    # board), and checked every _OFFLINE_CHECK_S, so a dead board is offline within 1 s.
    offline_after_s: float = 0.8
    discover_every_s: float = 2.0  # look for hot-plugged boards
    expected_fw: tuple[int, int, int] | None = None  # flag boards running something else
    rating_ca: int = 1600
    curve: tuple[tuple[int, int, int], ...] = ()
    # request timeout beyond the answer's own length: 2 ms board turnaround, the transport's
    # 2 ms read coalescing, slack
    turnaround_s: float = 0.006


class BusMaster:
    """Owns the bus. ``write`` sends bytes on the line; feed received bytes to ``feed``."""

    def __init__(
        self,
        write: Callable[[bytes], Awaitable[None]],
        listener: BusListener,
        settings: CycleSettings,
        *,
        freq_centihz: Callable[[], int] = lambda: 0,
    ) -> None:
        self._write = write
        self.listener = listener
        self.settings = settings
        self.freq_centihz = freq_centihz
        self.boards: dict[int, BoardLink] = {}  # by address
        self.reader = FrameReader()
        self.superframes = 0
        self.reports = 0  # REPORT frames received
        self.bad_frames = 0
        self.foreign_frames = 0
        self._seq = 0
        self._detail_index = 0
        self._alarm_index = 0
        self._detail_waiter: tuple[BoardLink, asyncio.Event] | None = None
        self._waiter: tuple[Callable[[Message], bool], asyncio.Future[Message]] | None = None
        self._discovery_replies: list[DiscoverReply] | None = None
        self._discovery_garbled = 0
        self._slot_window: tuple[float, list[BoardLink], float, int, BoardLink | None] | None = None
        self._last_discovery = -1e9
        self._probe_index = 0
        self._last_probe = -1e9
        self.guard_us = settings.guard_us
        self._clean_cycles = 0
        self._slot_bad = 0  # bad frames inside the current superframe's slots
        self._last_rx = -1e9
        self._running = True
        self.cycle_started: list[float] = []  # recent cycle start times, for rate figures

    # -- timing --------------------------------------------------------------------------
    def frame_time(self, wire_bytes: int) -> float:
        return wire_bytes * 10.0 / self.settings.baud

    @property
    def slot_us(self) -> int:
        # header + payload + CRC, one COBS code byte, the delimiter
        report_wire = C.HEADER_LEN + L.REPORT_LEN + C.CRC_LEN + 2
        return math.ceil(self.frame_time(report_wire) * 1e6) + self.guard_us

    def _adapt_guard(self, bad_in_cycle: int) -> None:
        # Boards' slot timing jitters (interrupt latency on a chip, scheduling in the
        # virtual PDU). Garbled slots mean the guard is too short: widen it at once; after
        # a long clean run, narrow it again, never below the configured value.
        if bad_in_cycle:
            self.guard_us = min(self.guard_us + _GUARD_STEP_US, _MAX_GUARD_US)
            self._clean_cycles = 0
            return
        self._clean_cycles += 1
        if self._clean_cycles >= 20 and self.guard_us > self.settings.guard_us:
            self.guard_us = max(self.settings.guard_us, self.guard_us - 50)
            self._clean_cycles = 0

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    # -- receive -------------------------------------------------------------------------
    def feed(self, data: bytes, received_at: float) -> None:
        self._last_rx = received_at
        reader = self.reader
        i = 0
        n = len(data)
        while i < n:
            i = reader.feed(data, i, n)
            if not reader.ready:
                continue
            try:
                reader.decode()
                message = message_from_reader(reader)
            except FrameError:
                self._bad_frame(received_at)
                continue
            if message.src == C.ADDR_MASTER:
                continue  # our own frame, heard through a transceiver with local echo
            self._dispatch(message, received_at)

    def _bad_frame(self, received_at: float) -> None:
        self.bad_frames += 1
        if self._discovery_replies is not None:
            self._discovery_garbled += 1
            return
        link = self._slot_owner(received_at)
        if self._slot_window is not None:
            self._slot_bad += 1
        if link is not None:
            link.quality.crc_errors += 1

    def _slot_owner(self, t: float) -> BoardLink | None:
        if self._slot_window is None:
            return None
        start, order, slot_s, rounds, detail = self._slot_window
        k = int((t - start) / slot_s)
        if k < 0:
            return None
        if k < rounds * len(order):
            return order[k % len(order)]
        return detail

    def _dispatch(self, message: Message, received_at: float) -> None:
        if isinstance(message, DiscoverReply) and self._discovery_replies is not None:
            self._discovery_replies.append(message)
            return
        if self._waiter is not None:
            matches, future = self._waiter
            if matches(message) and not future.done():
                future.set_result(message)
        link = self.boards.get(message.src)
        if link is None:
            self.foreign_frames += 1
            return
        self._seen(link, received_at)
        try:
            if isinstance(message, Report):
                self.reports += 1
                alarms = message.alarms
                link.alarming = C.AL_SLIGHT in alarms or C.AL_SERIOUS in alarms
                self.listener.report(link, message, received_at)
            elif isinstance(message, Telemetry):
                if self._detail_waiter is not None and self._detail_waiter[0] is link:
                    self._detail_waiter[1].set()
                self.listener.telemetry(link, message, received_at)
            elif isinstance(message, Status):
                self.listener.status(link, message, received_at)
        except Exception:
            # A fault above must not stop the bus: log it and keep receiving.
            _LOG.exception("listener failed on %s from board %d", message.NAME, link.address)

    @staticmethod
    def _notify(callback: Callable[..., None], *args: object) -> None:
        # A fault above (the unit model) must never stop the bus or a discovery.
        try:
            callback(*args)
        except Exception:
            _LOG.exception("listener %s failed", getattr(callback, "__name__", callback))

    def _seen(self, link: BoardLink, received_at: float) -> None:
        link.last_seen = received_at
        link.quality.frames_ok += 1
        if not link.online:
            link.online = True
            _LOG.info("board %d (%s) online", link.address, link.uid.hex())
            self._notify(self.listener.board_online, link)

    # -- requests ------------------------------------------------------------------------
    async def send(self, message: Message) -> float:
        """Put ``message`` on the line; returns the loop time its last byte leaves."""
        wire = encode(message)
        if message.dst == C.ADDR_BROADCAST:
            wire = b"\x00" + wire  # flush any line noise before a frame everyone reads
        loop = asyncio.get_running_loop()
        # Listen before talking: a board answering late (a slow interrupt, a busy virtual
        # board) is still on the line; wait for it to go quiet instead of colliding.
        quiet_s = max(3 * self.frame_time(1), self.guard_us / 2e6)
        for _ in range(20):
            idle = loop.time() - self._last_rx
            if idle >= quiet_s:
                break
            await asyncio.sleep(quiet_s - idle)
        await self._write(wire)
        return loop.time() + self.frame_time(len(wire))

    async def request(
        self, message: Message, answer_bytes: int = 70, timeout: float | None = None
    ) -> Message | None:
        """Send a request to one board and wait for its answer (same seq, from it)."""
        message.seq = self._next_seq()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        dst, seq = message.dst, message.seq
        self._waiter = (lambda m: m.src == dst and m.seq == seq, future)
        sent_at = await self.send(message)
        wait = (sent_at - loop.time()) + self.frame_time(answer_bytes) + self.settings.turnaround_s
        try:
            # asyncio.timeout, not wait_for, here and below: on Python 3.11 wait_for swallows
            # a cancellation that arrives with the answer, and the master would not stop.
            async with asyncio.timeout(timeout or wait):
                answer = await future
        except TimeoutError:
            link = self.boards.get(dst)
            if link is not None:
                link.quality.timeouts += 1
            return None
        finally:
            self._waiter = None
        link = self.boards.get(dst)
        if link is not None:
            link.quality.note_latency((loop.time() - sent_at) * 1000)
        return answer

    # -- discovery -----------------------------------------------------------------------
    async def discover(self, unmute_all: bool = False) -> list[BoardLink]:
        """Find unmuted boards (all boards when ``unmute_all``); give each an address."""
        if unmute_all:
            await self.send(Mute(_ALL_UIDS, False, seq=self._next_seq()))
        found: list[BoardLink] = []
        await self._discover_branch(0, (1 << 64) - 1, found, depth=0)
        return found

    async def _discover_branch(self, lo: int, hi: int, found: list[BoardLink], depth: int) -> None:
        for _ in range(8):  # a branch rarely needs more than a couple of rounds
            replies, garbled = await self._discover_once(lo, hi)
            for reply in replies:
                link = await self._admit(reply)
                if link is not None:
                    found.append(link)
            if not replies and not garbled:
                return
            if garbled and lo < hi and depth < 64:
                mid = (lo + hi) // 2
                await self._discover_branch(lo, mid, found, depth + 1)
                await self._discover_branch(mid + 1, hi, found, depth + 1)
                return

    async def _discover_once(self, lo: int, hi: int) -> tuple[list[DiscoverReply], int]:
        self._discovery_replies = []
        self._discovery_garbled = 0
        try:
            sent_at = await self.send(
                Discover(lo.to_bytes(8, "big"), hi.to_bytes(8, "big"), seq=self._next_seq())
            )
            # Replies come within 4 ms of spread (see firmware/slave.py) + their own length.
            loop = asyncio.get_running_loop()
            await asyncio.sleep(
                max(0.0, sent_at - loop.time()) + 0.004 + self.frame_time(24) + 0.01
            )
            replies = self._discovery_replies
            garbled = self._discovery_garbled
            if self.reader.partial:
                # Colliding replies can garble every delimiter: what arrived is one endless
                # frame. It means "several boards here" just as surely as a CRC error.
                garbled += 1
                self.reader.reset()
            return replies, garbled
        finally:
            self._discovery_replies = None

    def _free_address(self, uid: bytes) -> int:
        for address in range(C.ADDR_FIRST_BOARD, C.ADDR_LAST_BOARD + 1):
            link = self.boards.get(address)
            if link is None or link.uid == uid:
                return address
        raise RuntimeError("no free bus address")

    async def _admit(self, reply: DiscoverReply) -> BoardLink | None:
        address = reply.address
        taken = self.boards.get(address)
        if not (C.ADDR_FIRST_BOARD <= address <= C.ADDR_LAST_BOARD) or (
            taken is not None and taken.uid != reply.uid
        ):
            address = self._free_address(reply.uid)
        if address != reply.address:
            ack = await self._request_from(
                Assign(reply.uid, address, seq=self._next_seq()), address
            )
            if ack is None:
                return None
        link = self.boards.get(address)
        if link is None or link.uid != reply.uid:
            link = BoardLink(reply.uid, address, reply.board_type)
            self.boards[address] = link
        muted = await self._request_from(Mute(reply.uid, True, seq=self._next_seq()), address)
        if muted is None:
            # The board has its address; if only the ACK was lost it is muted now and would
            # never answer a discovery again. Keep it: the offline probe brings it online.
            _LOG.info("board %s: no ACK to MUTE; probing address %d", reply.uid.hex(), address)
            return link
        info = await self.request(GetInfo(dst=address))
        if isinstance(info, Info):
            self._take_info(link, info)
        _LOG.info("board %s at address %d", reply.uid.hex(), address)
        return link

    async def _request_from(self, message: Message, address: int) -> Message | None:
        """A broadcast request (ASSIGN, MUTE by uid) answered by the board at ``address``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        seq = message.seq
        self._waiter = (lambda m: m.src == address and m.seq == seq, future)
        try:
            sent_at = await self.send(message)
            wait = sent_at - loop.time() + self.frame_time(16) + self.settings.turnaround_s + 0.05
            async with asyncio.timeout(wait):
                return await future
        except TimeoutError:
            return None
        finally:
            self._waiter = None

    def _take_info(self, link: BoardLink, info: Info) -> None:
        link.info = info
        link.board_type = info.board_type
        link.group = info.group
        expected = self.settings.expected_fw
        if expected is not None and tuple(info.fw_version) != expected:
            _LOG.warning(
                "board %d runs firmware %s, expected %s", link.address, info.fw_version, expected
            )
        self._notify(self.listener.board_info, link, info)

    # -- the cycle -----------------------------------------------------------------------
    def stop(self) -> None:
        self._running = False

    async def run(self) -> None:
        """Discover, then cycle until ``stop()``."""
        await self.discover(unmute_all=True)
        loop = asyncio.get_running_loop()
        self._last_discovery = loop.time()
        while self._running:
            await self.cycle()

    async def cycle(self) -> None:
        """One superframe: SYNC, ``rounds`` report rounds, the detail TELEMETRY, upkeep."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.superframes += 1
        online = sorted(
            (b for b in self.boards.values() if b.online and b.is_group_board),
            key=lambda b: b.address,
        )
        detail = self._pick_detail(online)
        first = online[0].address if online else 1
        order = [b for b in online if b.address - first < 32]
        mask = 0
        for link in order:
            mask |= 1 << (link.address - first)
        rounds = self.settings.rounds
        slot_us = self.slot_us
        sync = Sync(
            self.superframes & 0xFFFF,
            self.freq_centihz(),
            slot_us,
            first,
            mask,
            detail.address if detail else 0,
            rounds,
            self.settings.lead_us,
            seq=self._next_seq(),
        )
        self._slot_bad = 0
        sync_end = await self.send(sync)
        slot_s = slot_us / 1e6
        start = sync_end + self.settings.lead_us / 1e6
        self._slot_window = (start, order, slot_s, rounds, detail)
        end = start + rounds * len(order) * slot_s
        if detail is not None:
            end += self.frame_time(64 + 3 * 12) + self.guard_us / 1e6
        if order:
            for r in range(rounds):  # cycle starts, for the rate figures
                self.cycle_started.append(start + r * len(order) * slot_s)
        else:
            self.cycle_started.append(started)
        del self.cycle_started[:-200]
        detail_seen = asyncio.Event()
        self._detail_waiter = (detail, detail_seen) if detail is not None else None
        while (left := end - loop.time()) > 0:
            # Sleep through the superframe, noticing a board that has gone silent meanwhile.
            await asyncio.sleep(min(left, _OFFLINE_CHECK_S))
            self._mark_offline(loop.time())
        if self._detail_waiter is not None:
            # The SYNC may have reached the line later than this process thinks (a busy
            # host, a serial driver's buffer): the superframe ends with the detail
            # TELEMETRY, so give it a little longer before the next SYNC could collide.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DETAIL_GRACE_S):
                    await detail_seen.wait()
            self._detail_waiter = None
        self._slot_window = None
        self._adapt_guard(self._slot_bad)
        await self._poll_status_nodes()
        await self._maintenance(loop.time())
        self._mark_offline(loop.time())

    def _pick_detail(self, online: list[BoardLink]) -> BoardLink | None:
        """Round robin; every other superframe a board in overload, if there is one."""
        if not online:
            return None
        alarming = [b for b in online if b.alarming]
        if alarming and self.superframes % 2 == 0:
            self._alarm_index = (self._alarm_index + 1) % len(alarming)
            return alarming[self._alarm_index]
        self._detail_index = (self._detail_index + 1) % len(online)
        return online[self._detail_index]

    async def _poll_status_nodes(self) -> None:
        for link in list(self.boards.values()):
            if link.board_type in STATUS_BOARD_TYPES and link.online:
                await self.request(Poll(C.T_STATUS, dst=link.address), answer_bytes=24)

    async def _maintenance(self, now: float) -> None:
        # One extra exchange per cycle at most, so reports keep their rate.
        for link in self.boards.values():
            if link.online and link.info is None:
                info = await self.request(GetInfo(dst=link.address), answer_bytes=30)
                if isinstance(info, Info):
                    self._take_info(link, info)
                return
            if link.online and link.is_group_board and not link.config_pushed:
                await self._push_config(link)
                return
        offline = [b for b in self.boards.values() if not b.online]
        if offline and now - self._last_probe >= 0.1:
            self._last_probe = now
            self._probe_index = (self._probe_index + 1) % len(offline)
            link = offline[self._probe_index]
            want = C.T_STATUS if link.board_type in STATUS_BOARD_TYPES else C.T_REPORT
            await self.request(Poll(want, dst=link.address), answer_bytes=40)
        if now - self._last_discovery >= self.settings.discover_every_s:
            self._last_discovery = now
            await self.discover()

    async def _push_config(self, link: BoardLink) -> None:
        """Rating and breaker curve from the service config (calibration stays per board)."""
        link.config_pushed = True
        pushes: list[Message] = [
            ConfigSet(C.K_RATING, 0, self.settings.rating_ca, dst=link.address)
        ]
        if self.settings.curve:
            pushes.append(
                ConfigSet(C.K_CURVE, 0, [tuple(p) for p in self.settings.curve], dst=link.address)
            )
        for message in pushes:
            answer = await self.request(message, answer_bytes=12)
            if isinstance(answer, Nak):
                _LOG.warning("board %d refused config: error %d", link.address, answer.error)

    def _mark_offline(self, now: float) -> None:
        for link in self.boards.values():
            if link.online and now - link.last_seen > self.settings.offline_after_s:
                link.online = False
                link.quality.timeouts += 1
                _LOG.warning("board %d (%s) offline", link.address, link.uid.hex())
                self._notify(self.listener.board_offline, link)

    # -- figures -------------------------------------------------------------------------
    def cycle_rate(self) -> float:
        """Cycles per second over the recent cycles."""
        starts = self.cycle_started
        if len(starts) < 2:
            return 0.0
        return (len(starts) - 1) / (starts[-1] - starts[0])


async def run_master(master: BusMaster) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await master.run()
