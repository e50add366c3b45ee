"""RS-485 slave of a group board (or the mains status node).

Answers only frames addressed to it or broadcast; every answer goes out within the protocol's
2 ms turnaround, except TDMA REPORT/TELEMETRY slots after a SYNC, which are scheduled at
their slot time: one REPORT per round for the SYNC's ``rounds`` rounds, timed from the line
time the SYNC ended (``receive``'s ``end_us``), then the TELEMETRY if this board is the
superframe's detail board. A slot whose start has already passed when the frame is due is
skipped and counted (``late_slots``): a late frame would collide with the next board's.
The per-cycle path (SYNC/POLL in, REPORT/TELEMETRY out) allocates nothing:
frames are parsed in the FrameReader's buffer and built in the FrameWriter's. Rare messages
(INFO, CONFIG, discovery) use the protocol's message classes: only the families a board
answers (``protocol.admin``, ``protocol.discovery``) are imported, not the report cycle's.
"""

import struct
import time

from firmware.config import BoardConfig, ConfigStore
from firmware.measurements import Measurements
from protocol import consts as C
from protocol.admin import Ack, ConfigGet, ConfigSet, ConfigValue, Identify, Info, Nak
from protocol.discovery import Assign, Discover, DiscoverReply, Mute
from protocol.errors import FieldError, FrameError
from protocol.framing import FrameReader, FrameWriter
from protocol.layouts import (
    SYNC_DETAIL,
    SYNC_FREQ,
    SYNC_LEAD,
    SYNC_ROUNDS,
    SYNC_SLOT_US,
    get_u16,
    pack_report,
    pack_telemetry,
    sync_slot,
    sync_slot_count,
)
from protocol.schema import encode, message_from_reader

FW_VERSION = (1, 0, 0)

_NO_TX = -1
_TURNAROUND_US = 200  # answer after the master has released its driver


class SlaveCounters:
    def __init__(self) -> None:
        self.rx_frames = 0
        self.rx_errors = 0  # COBS / CRC / length errors on any frame seen
        self.naks = 0
        self.tx_frames = 0
        self.late_slots = 0  # TDMA slots skipped because the board was not ready in time


class BusSlave:
    """Protocol engine between the UART and the board's measurements.

    ``measurements`` must expose ``centiamps`` (array of 12 x 10 mA), ``states`` (bytearray,
    state | STATE_CLIP), ``crest_x10`` (bytearray), ``ttt_ds`` (array of 12 x 0.1 s),
    ``windows``, ``freq_centihz`` and ``flags``; a status node passes ``status`` instead: an
    object with ``pack(buf, off) -> length`` for the STATUS payload. ``panel`` (a group
    board's ``FrontPanel``, or anything with ``selected``: channel 0..11 or -1) goes into
    every REPORT, so the aggregator sees a press within one round.
    """

    def __init__(
        self,
        uid: bytes,
        board_type: int,
        config: BoardConfig,
        store: ConfigStore,
        measurements: "Measurements | None" = None,
        status=None,
        on_config=None,
        on_identify=None,
        panel=None,
    ) -> None:
        self.uid = bytes(uid)
        self.board_type = board_type
        self.config = config
        self.store = store
        self.measurements = measurements
        self.status = status
        self.panel = panel
        self.on_config = on_config  # called after a config change was saved
        self.on_identify = on_identify  # called with the seconds to blink
        self.reader = FrameReader()
        self.writer = FrameWriter(config.address)
        self.counters = SlaveCounters()
        self.muted = False
        self.sync_freq_centihz = 0  # last mains frequency broadcast by the master
        self.boot_ms = time.ticks_ms()
        self._up_at_ms = self.boot_ms  # uptime: whole seconds + ms, advanced by uptime_s()
        self._up_s = 0
        self._up_ms = 0
        self._tx_type = _NO_TX  # scheduled slot answer
        self._tx_seq = 0
        self._tx_at_us = 0
        self.tx_at_us = 0  # start time of the frame due() returned last
        # One character (10 bits) on the line at the default baud; the app sets the real one.
        self.char_ns = (1_000_000_000 + C.BUS_BAUD // 20) // (C.BUS_BAUD // C.BITS_PER_CHAR)
        # Superframe after a SYNC: round r's REPORT starts at base + (r * count + slot) * slot_us.
        self._sf_base_us = time.ticks_us()
        self._sf_slot = -1
        self._sf_count = 0
        self._sf_slot_us = 0
        self._sf_rounds = 0  # rounds this board has a slot in
        self._sf_total = 0  # rounds in the superframe
        self._sf_round = 0
        self._sf_detail = False
        self._tx_slotted = False  # the scheduled frame belongs to the superframe
        self._pending = None  # bytes of a rare answer (INFO, CONFIG, ...)
        self._pending_at_us = 0
        # memoryview per frame length, made once (a dict: a few lengths occur, and a list
        # per possible length would hold 1 KB on the chip)
        self._views: dict = {}
        # INFO: the config digest (canonical JSON + CRC, milliseconds on the chip) is kept
        # with the config values it was computed from, and the answer is packed straight
        # into the writer (and copied out: the bus task has handed over the frame it held),
        # so an INFO goes out within the turnaround.
        self._info_config = None
        self._info_digest = 0

    # -- receive -------------------------------------------------------------------------
    def receive(self, data, n: int, end_us) -> None:
        """Feed ``data[:n]`` from the UART; ``end_us`` is the ticks_us() at which the chunk's
        last byte ended on the line (each frame's own end is worked out from it)."""
        reader = self.reader
        i = 0
        while i < n:
            i = reader.feed(data, i, n)
            if not reader.ready:
                continue
            mtype = reader.check()  # no raise: allocation-free for bad frames too
            if mtype < 0:
                self._bad_frame(reader.error)
                continue
            self.counters.rx_frames += 1
            dst = reader.dst
            if dst == self.config.address or dst == C.ADDR_BROADCAST:
                frame_end = time.ticks_add(end_us, -(((n - i) * self.char_ns) // 1000))
                self._handle(mtype, frame_end)

    def _bad_frame(self, exc: FrameError) -> None:
        reader = self.reader
        if not reader.crc_ok:
            # COBS/CRC/overflow: nothing about the frame can be trusted, so never answer.
            self.counters.rx_errors += 1
            return
        # Version, type or length errors in a frame with a valid CRC: NAK if it was addressed
        # to this board alone (broadcasts are never answered with a NAK).
        if reader.dst == self.config.address and reader.src == C.ADDR_MASTER:
            self._nak(reader.mtype, exc.code, reader.seq)

    def _handle(self, mtype: int, now_us) -> None:
        reader = self.reader
        raw = reader.raw
        p = C.HEADER_LEN
        broadcast = reader.dst == C.ADDR_BROADCAST
        if mtype == C.T_SYNC:
            self._on_sync(raw, p, now_us, reader.seq)
        elif mtype == C.T_POLL:
            want = raw[p]
            if want == C.T_TELEMETRY or want == C.T_REPORT:
                if self.measurements is None:
                    self._nak(mtype, C.E_NOT_SUPPORTED, reader.seq)
                else:
                    self._schedule(want, reader.seq, time.ticks_add(now_us, _TURNAROUND_US))
            elif want == C.T_STATUS:
                if self.status is None:
                    self._nak(mtype, C.E_NOT_SUPPORTED, reader.seq)
                else:
                    self._schedule(want, reader.seq, time.ticks_add(now_us, _TURNAROUND_US))
            else:
                self._nak(mtype, C.E_BAD_VALUE, reader.seq)
        elif broadcast and mtype != C.T_DISCOVER and mtype != C.T_MUTE and mtype != C.T_ASSIGN:
            return  # only SYNC and discovery are meaningful as broadcasts
        else:
            self._handle_rare(mtype, now_us)

    def _on_sync(self, raw, p: int, end_us, seq: int) -> None:
        freq = get_u16(raw, p + SYNC_FREQ)
        if freq:
            self.sync_freq_centihz = freq
        me = self.config.address
        self._sf_rounds = 0
        self._sf_detail = False
        if self.measurements is None or me > C.ADDR_LAST_BOARD:
            return
        slot_us = get_u16(raw, p + SYNC_SLOT_US)
        self._sf_slot_us = slot_us
        self._sf_base_us = time.ticks_add(end_us, get_u16(raw, p + SYNC_LEAD))
        self._sf_count = sync_slot_count(raw, p)
        self._sf_slot = sync_slot(raw, p, me)
        self._sf_round = 0
        self._tx_seq = seq
        self._sf_total = raw[p + SYNC_ROUNDS]
        self._sf_rounds = self._sf_total if self._sf_slot >= 0 else 0
        self._sf_detail = raw[p + SYNC_DETAIL] == me
        self._tx_type = _NO_TX
        self._next_slot()

    def _next_slot(self) -> None:
        """Schedule the next frame of the superframe (REPORT rounds, then the detail slot)."""
        if self._sf_round < self._sf_rounds:
            k = self._sf_round * self._sf_count + self._sf_slot
            self._schedule(
                C.T_REPORT, self._tx_seq, time.ticks_add(self._sf_base_us, k * self._sf_slot_us)
            )
            self._tx_slotted = True
            self._sf_round += 1
        elif self._sf_detail:
            self._sf_detail = False
            k = self._sf_total * self._sf_count
            self._schedule(
                C.T_TELEMETRY,
                self._tx_seq,
                time.ticks_add(self._sf_base_us, k * self._sf_slot_us),
            )
            self._tx_slotted = True

    def _schedule(self, mtype: int, seq: int, at_us) -> None:
        self._tx_slotted = False
        self._tx_type = mtype
        self._tx_seq = seq
        self._tx_at_us = at_us

    # -- rare messages (allocate; not on the per-cycle path) -----------------------------
    def _handle_rare(self, mtype: int, now_us) -> None:
        reader = self.reader
        if mtype == C.T_STATUS or mtype == C.T_TELEMETRY or mtype == C.T_REPORT:
            return  # another board's answer (bus is shared); its classes are not imported
        if mtype == C.T_GET_INFO:
            self._answer(self.info(reader.seq), now_us)
            return
        try:
            msg = message_from_reader(reader)
        except FrameError as exc:
            if reader.dst != C.ADDR_BROADCAST:
                self._nak(mtype, exc.code or C.E_BAD_VALUE, reader.seq)
            return
        seq = reader.seq
        if isinstance(msg, ConfigGet):
            try:
                value = self.config.get(msg.key, msg.index)
            except FieldError as exc:
                self._nak(mtype, exc.code, seq)
                return
            self._answer(
                encode(ConfigValue(msg.key, msg.index, value, src=self._src(), seq=seq)), now_us
            )
        elif isinstance(msg, ConfigSet):
            self._config_set(msg.key, msg.index, msg.value, seq, now_us)
        elif isinstance(msg, Identify):
            if self.on_identify is not None:
                self.on_identify(msg.seconds)
            self._ack(mtype, seq, now_us)
        elif isinstance(msg, Discover):
            if not self.muted and msg.uid_lo <= self.uid <= msg.uid_hi:
                reply = DiscoverReply(self.uid, self.config.address, self.board_type, seq=seq)
                reply.src = self._src()
                # Spread replies over 0-3 reply times so two boards rarely overlap exactly;
                # overlaps that still happen are seen as garbage by the master, who splits.
                delay = (self.uid[7] & 3) * 1000
                self._answer(encode(reply), time.ticks_add(now_us, delay))
        elif isinstance(msg, Mute):
            everyone = msg.uid == b"\xff" * C.UID_LEN
            if everyone or msg.uid == self.uid:
                self.muted = msg.mute
                if not everyone:
                    self._ack(mtype, seq, now_us)
        elif isinstance(msg, Assign):
            if msg.uid == self.uid:
                self.config.address = msg.address
                if msg.group:
                    self.config.group = msg.group
                self.writer.src = msg.address
                self._persist(mtype, seq, now_us)
        elif reader.dst != C.ADDR_BROADCAST and reader.src == C.ADDR_MASTER:
            self._nak(mtype, C.E_NOT_SUPPORTED, seq)

    def _config_set(self, key: int, index: int, value, seq: int, now_us) -> None:
        try:
            self.config.set(key, index, value)
        except FieldError as exc:
            self._nak(C.T_CONFIG_SET, exc.code, seq)
            return
        if key == C.K_ADDRESS:
            self.writer.src = value
        self._persist(C.T_CONFIG_SET, seq, now_us)

    def _persist(self, mtype: int, seq: int, now_us) -> None:
        try:
            self.store.save(self.config)
        except OSError:
            self._nak(mtype, C.E_STORAGE, seq)
            return
        if self.on_config is not None:
            self.on_config(self.config)
        self._ack(mtype, seq, now_us)

    def info(self, seq: int = 0) -> bytes:
        flags = C.F_CONFIG_DEFAULTS if self.store.fallback else 0
        if self.measurements is not None:
            flags |= self.measurements.flags
        cfg = self.config
        channels = C.CHANNELS if self.measurements is not None else 0
        values = (
            cfg.address,
            cfg.group,
            cfg.mains_hz,
            cfg.rating_ca,
            cfg.noise_floor_ma,
            tuple(cfg.cal_gain_ppm),
            tuple(cfg.curve),
        )
        if values != self._info_config:
            digest = cfg.digest()
            # checked against the layout once per config (the answer below is not)
            Info(FW_VERSION, C.VERSION, self.board_type, self.uid, cfg.group, channels,
                 digest, flags & 0xFF, src=self._src(), seq=seq).validate()  # fmt: skip
            self._info_config = values
            self._info_digest = digest
        writer = self.writer
        writer.src = self._src()
        fw = FW_VERSION
        group = cfg.group
        struct.pack_into(
            Info.FORMAT, writer.raw, C.HEADER_LEN, fw[0], fw[1], fw[2], C.VERSION,
            self.board_type, self.uid, ord(group) if group else 0, channels,
            self._info_digest, flags & 0xFF,
        )  # fmt: skip
        n = writer.seal(C.ADDR_MASTER, C.T_INFO, seq, Info.SIZE)
        return bytes(writer.wire[:n])

    def _src(self) -> int:
        return self.config.address

    def _ack(self, mtype: int, seq: int, now_us) -> None:
        self._answer(encode(Ack(mtype, src=self._src(), seq=seq)), now_us)

    def _nak(self, mtype: int, code: int, seq: int) -> None:
        self.counters.naks += 1
        self._answer(
            encode(Nak(mtype, code, src=self._src(), seq=seq)),
            time.ticks_add(time.ticks_us(), _TURNAROUND_US),
        )

    def _answer(self, wire: bytes, at_us) -> None:
        self._pending = wire
        self._pending_at_us = at_us

    # -- transmit ------------------------------------------------------------------------
    def uptime_s(self) -> int:
        """Seconds since boot. ``ticks_diff(now, boot)`` would go negative after 2**29 ms
        (6.2 days) on the chip, where ``ticks_ms`` wraps at 2**30: the uptime is advanced on
        every call instead (small ints only), which must come at least every 6.2 days (the
        board's watchdog task calls it every 500 ms)."""
        now = time.ticks_ms()
        ms = self._up_ms + time.ticks_diff(now, self._up_at_ms)
        self._up_at_ms = now
        self._up_s += ms // 1000
        self._up_ms = ms % 1000
        return self._up_s

    def due(self, now_us, ahead_us: int = 0):
        """The next frame to transmit if it starts within ``ahead_us``, else None.

        The frame starts at :attr:`tx_at_us` (the UART driver waits for it). Call often from
        the main loop.
        """
        if self._pending is not None and (time.ticks_diff(self._pending_at_us, now_us) <= ahead_us):
            wire = self._pending
            self._pending = None
            self.tx_at_us = self._pending_at_us
            self.counters.tx_frames += 1
            return wire
        if self._tx_type == _NO_TX:
            return None
        wait = time.ticks_diff(self._tx_at_us, now_us)
        if wait > ahead_us:
            return None
        mtype = self._tx_type
        self._tx_type = _NO_TX
        self.tx_at_us = self._tx_at_us
        if self._tx_slotted:
            self._next_slot()
            if wait < 0:
                self.counters.late_slots += 1
                return None
        writer = self.writer
        p = C.HEADER_LEN
        m = self.measurements
        if mtype == C.T_STATUS:
            if self.status is None:
                return None
            n = self.status.pack(writer.raw, p)
        elif m is None:
            return None
        else:
            rx_errors = self.counters.rx_errors
            if mtype == C.T_REPORT:
                panel = self.panel
                selected = -1 if panel is None else panel.selected
                n = pack_report(writer.raw, p, m.centiamps, m.states, selected)
            else:
                uptime_s = self.uptime_s()
                n = pack_telemetry(
                    writer.raw,
                    p,
                    m.flags,
                    m.centiamps,
                    m.states,
                    m.crest_x10,
                    uptime_s,
                    rx_errors,
                    m.windows,
                    m.freq_centihz,
                    m.ttt_ds,
                )
        length = writer.seal(C.ADDR_MASTER, mtype, self._tx_seq, n)
        view = self._views.get(length)
        if view is None:
            view = self._views[length] = memoryview(writer.wire)[:length]
        self.counters.tx_frames += 1
        return view
