"""The boards on the bus: who is there, which group each serves, what firmware it runs,
its health flags and link figures. Fed by the bus master (through the unit state); reports
online/offline, conflicts, health and firmware mismatches to the event hub."""

from __future__ import annotations

from host.state.events import EventHub, EventKind, Severity
from host.state.snapshot import LinkStats
from protocol import consts as C
from protocol.messages import Info, Status, Telemetry

MAINS_BOARD_TYPES = (C.BOARD_MAINS_STATUS, C.BOARD_MAINS_STATUS_SIM)
BOARD_TYPE_NAMES = {
    C.BOARD_PICO_MCP3208: "pico_mcp3208",
    C.BOARD_SIM: "sim",
    C.BOARD_MAINS_STATUS: "mains_status",
    C.BOARD_MAINS_STATUS_SIM: "mains_status_sim",
}
BOARD_FLAG_NAMES = (
    (C.F_CONFIG_DEFAULTS, "config_defaults"),
    (C.F_CLIPPING, "clipping"),
    (C.F_IDENTIFY, "identify"),
    (C.F_NO_VREF, "no_voltage_reference"),
    (C.F_WATCHDOG_RESET, "watchdog_reset"),
    (C.F_TASK_RESTARTED, "task_restarted"),
)
# Board flags worth an event when they appear (clipping and identify come and go).
BOARD_FLAG_EVENTS = {
    C.F_CONFIG_DEFAULTS: "runs on default settings: its config file was missing or corrupt",
    C.F_WATCHDOG_RESET: "was restarted by its watchdog",
    C.F_TASK_RESTARTED: "restarted a crashed firmware task",
    C.F_NO_VREF: "has no voltage reference; it uses the meter's frequency",
}

Version = tuple[int, int, int]


def fmt_version(version: Version | None) -> str | None:
    return None if version is None else ".".join(str(v) for v in version)


def flag_names(flags: int) -> tuple[str, ...]:
    return tuple(name for bit, name in BOARD_FLAG_NAMES if flags & bit)


class Board:
    """What the state knows of one board (mutable; snapshots copy it)."""

    __slots__ = (
        "address",
        "board_type",
        "config_digest",
        "firmware",
        "flags",
        "group",
        "last_seen",
        "link",
        "mains_hz",
        "mismatch_reported",
        "online",
        "rx_errors",
        "selected",
        "uid",
        "uptime",
    )

    def __init__(self, address: int) -> None:
        self.address = address
        self.board_type: int | None = None
        self.group = ""
        self.uid: bytes | None = None
        self.firmware: Version | None = None
        self.config_digest: int | None = None
        self.flags = 0
        self.online = False
        self.last_seen: float | None = None
        self.link = LinkStats()
        self.rx_errors: int | None = None
        self.uptime: int | None = None
        self.mains_hz: float | None = None
        self.mismatch_reported: Version | None = None
        self.selected: int | None = None  # front-panel output 1..12 (REPORT), None: none

    @property
    def is_mains(self) -> bool:
        return self.board_type in MAINS_BOARD_TYPES


class BoardRegistry:
    """Every board heard of, by address, and the group -> board assignment."""

    def __init__(
        self, hub: EventHub, model: int, groups: str, expected_firmware: Version | None
    ) -> None:
        self._hub = hub
        self._model = model
        self._groups = groups
        self._expected_firmware = expected_firmware
        self._boards: dict[int, Board] = {}
        self._group_boards: dict[str, int] = {}  # group letter -> address
        self.mains_address: int | None = None

    # -- lookups ---------------------------------------------------------------------------

    def get(self, address: int | None) -> Board | None:
        return None if address is None else self._boards.get(address)

    def of_group(self, group: str) -> Board | None:
        """The board serving ``group`` (online or not), None before one claimed it."""
        return self.get(self._group_boards.get(group))

    def mains(self) -> Board | None:
        return self.get(self.mains_address)

    def report_source(self, address: int, at: float) -> Board | None:
        """The board at ``address`` if it is its group's board (its REPORTs count)."""
        board = self._boards.get(address)
        if board is None or not board.group or self._group_boards.get(board.group) != address:
            return None
        board.last_seen = at
        return board

    def firmware_mismatch(self, board: Board) -> bool:
        reference = self._reference_firmware()
        return reference is not None and board.firmware is not None and board.firmware != reference

    def _board(self, address: int) -> Board:
        board = self._boards.get(address)
        if board is None:
            board = self._boards[address] = Board(address)
        return board

    # -- what the bus master tells ---------------------------------------------------------

    def online(
        self, address: int, at: float, board_type: int | None, uid: bytes | None, group: str
    ) -> None:
        """The bus master heard from a board (first time, or back after being offline)."""
        board = self._board(address)
        if board_type is not None:
            board.board_type = board_type
        if uid is not None:
            board.uid = bytes(uid)
        board.last_seen = at
        was_online = board.online
        board.online = True
        assigned = False
        if board.is_mains or address == self.mains_address:
            self.mains_address = address
        elif group:
            assigned = self._assign_group(board, group, at)
        if not was_online or assigned:
            self._online_event(board, at)

    def info(self, address: int, info: Info, at: float) -> None:
        """INFO from a board: firmware, uid, group, config digest and flags."""
        board = self._board(address)
        board.board_type = info.board_type
        board.uid = bytes(info.uid)
        major, minor, patch = info.fw_version
        board.firmware = (int(major), int(minor), int(patch))
        board.config_digest = info.config_digest
        if board.is_mains:
            self.mains_address = address
        elif info.group and self._assign_group(board, info.group, at) and board.online:
            self._online_event(board, at)
        self.update_flags(board, info.flags, at)
        self._check_firmware(at)

    def offline(self, address: int, at: float, reason: str) -> tuple[bool, str | None]:
        """A board stopped answering. Returns whether that is news, and the group whose
        channels are no longer monitored (None for the mains node or a spare board)."""
        board = self._boards.get(address)
        if board is None or not board.online:
            return False, None
        board.online = False
        board.selected = None  # unknown until its next REPORT
        if board.is_mains:
            self._hub.emit(
                at,
                EventKind.BOARD_OFFLINE,
                Severity.ALARM,
                f"mains status node offline ({reason}): breaker, E-Stop and Neutral status unknown",
                condition="board:mains",
                active=True,
                address=address,
                reason=reason,
            )
        elif board.group and self._group_boards.get(board.group) == address:
            self._hub.emit(
                at,
                EventKind.BOARD_OFFLINE,
                Severity.ALARM,
                f"group {board.group} board offline ({reason}): its 12 channels are not monitored",
                group=board.group,
                condition=f"board:{board.group}",
                active=True,
                address=address,
                reason=reason,
            )
            return True, board.group
        return True, None

    def update_link(self, address: int, stats: LinkStats) -> bool:
        """Link counters from the bus master; True when they changed."""
        board = self._board(address)
        if stats == board.link:
            return False
        board.link = stats
        return True

    def telemetry(self, board: Board, telemetry: Telemetry, at: float) -> None:
        """The board-health part of a TELEMETRY."""
        board.uptime = telemetry.uptime_s
        board.rx_errors = telemetry.rx_errors
        board.mains_hz = telemetry.freq_centihz / 100.0 if telemetry.freq_centihz else None
        self.update_flags(board, telemetry.flags, at)

    def status(self, address: int, status: Status, at: float) -> None:
        """The board-health part of the mains status node's STATUS."""
        board = self._board(address)
        if not board.is_mains:
            board.board_type = board.board_type or C.BOARD_MAINS_STATUS
        self.mains_address = address
        board.last_seen = at
        board.uptime = status.uptime_s
        board.rx_errors = status.rx_errors

    def update_flags(self, board: Board, flags: int, at: float) -> None:
        appeared = flags & ~board.flags
        board.flags = flags
        where = "mains status node" if board.is_mains else f"group {board.group or '?'} board"
        for bit, text in BOARD_FLAG_EVENTS.items():
            if appeared & bit:
                severity = Severity.INFO if bit == C.F_NO_VREF else Severity.WARNING
                self._hub.emit(
                    at,
                    EventKind.BOARD_HEALTH,
                    severity,
                    f"{where} {text}",
                    group=board.group or None,
                    address=board.address,
                    flag=dict(BOARD_FLAG_NAMES)[bit],
                )

    # -- internals -------------------------------------------------------------------------

    def _online_event(self, board: Board, at: float) -> None:
        if board.is_mains:
            self._hub.emit(
                at,
                EventKind.BOARD_ONLINE,
                Severity.INFO,
                "mains status node online",
                condition="board:mains",
                address=board.address,
            )
        elif board.group and self._group_boards.get(board.group) == board.address:
            self._hub.emit(
                at,
                EventKind.BOARD_ONLINE,
                Severity.INFO,
                f"group {board.group} board online",
                group=board.group,
                condition=f"board:{board.group}",
                address=board.address,
            )

    def _assign_group(self, board: Board, group: str, at: float) -> bool:
        """Make ``board`` the board of ``group``; True when that is new."""
        if board.group == group and self._group_boards.get(group) == board.address:
            return False
        if group not in self._groups:
            self._hub.emit(
                at,
                EventKind.BOARD_CONFLICT,
                Severity.WARNING,
                f"a board (address {board.address}) says it serves group {group}, which the "
                f"smartPDU {self._model} does not have; its data is ignored",
                group=group,
                address=board.address,
            )
            return False
        previous = self._group_boards.get(group)
        if previous is not None and previous != board.address:
            other = self._boards.get(previous)
            if other is not None and other.online:
                self._hub.emit(
                    at,
                    EventKind.BOARD_CONFLICT,
                    Severity.ALARM,
                    f"two boards claim group {group} (addresses {previous} and "
                    f"{board.address}); showing address {board.address}",
                    group=group,
                    addresses=[previous, board.address],
                )
            if other is not None:
                other.group = ""
        if board.group and self._group_boards.get(board.group) == board.address:
            del self._group_boards[board.group]
        board.group = group
        self._group_boards[group] = board.address
        return True

    def _reference_firmware(self) -> Version | None:
        if self._expected_firmware is not None:
            return self._expected_firmware
        versions = [
            b.firmware
            for b in self._boards.values()
            if not b.is_mains and b.group and b.firmware is not None
        ]
        if not versions:
            return None
        # The most common version; on a tie the newest, which is the likely target.
        return max(set(versions), key=lambda v: (versions.count(v), v))

    def _check_firmware(self, at: float) -> None:
        reference = self._reference_firmware()
        for board in self._boards.values():
            if board.is_mains or not board.group or board.firmware is None:
                continue
            key = f"firmware:{board.group}"
            if reference is not None and board.firmware != reference:
                if board.mismatch_reported != board.firmware:
                    board.mismatch_reported = board.firmware
                    self._hub.emit(
                        at,
                        EventKind.BOARD_FIRMWARE_MISMATCH,
                        Severity.WARNING,
                        f"group {board.group} board runs firmware "
                        f"{fmt_version(board.firmware)}, expected {fmt_version(reference)}",
                        group=board.group,
                        condition=key,
                        active=True,
                        firmware=fmt_version(board.firmware),
                        expected=fmt_version(reference),
                    )
            elif board.mismatch_reported is not None:
                board.mismatch_reported = None
                self._hub.clear_condition(key)
