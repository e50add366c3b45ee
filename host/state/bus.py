"""The bus master's listener calls, applied to a UnitState. The bus master's records are
described here as protocols, so the state does not import the bus layer."""

from __future__ import annotations

from typing import Protocol

from host.state.snapshot import LinkStats
from host.state.unit import UnitState
from protocol.messages import Info, Report, Status, Telemetry


class BoardLinkLike(Protocol):
    """What the adapter reads of the bus master's per-board record (host.busmaster's
    BoardLink), declared here so the state does not import the bus layer."""

    @property
    def address(self) -> int: ...
    @property
    def uid(self) -> bytes: ...
    @property
    def board_type(self) -> int: ...
    @property
    def group(self) -> str: ...
    @property
    def quality(self) -> LinkQualityLike: ...


class LinkQualityLike(Protocol):
    @property
    def frames_ok(self) -> int: ...
    @property
    def crc_errors(self) -> int: ...
    @property
    def timeouts(self) -> int: ...
    @property
    def latency_ms(self) -> float: ...


class StateBusListener:
    """The bus master's listener calls, applied to a UnitState. Times the master passes
    are loop time (``time.monotonic``), the state's default clock."""

    def __init__(self, state: UnitState) -> None:
        self.state = state

    def _link(self, link: BoardLinkLike) -> None:
        q = link.quality
        latency = q.latency_ms or None
        self.state.update_link(
            link.address, LinkStats(q.frames_ok, q.crc_errors, q.timeouts, latency)
        )

    def board_online(self, link: BoardLinkLike) -> None:
        self.state.board_online(
            link.address,
            self.state.now(),
            board_type=link.board_type,
            uid=link.uid,
            group=link.group,
        )

    def board_offline(self, link: BoardLinkLike) -> None:
        self._link(link)
        self.state.board_offline(link.address, self.state.now())

    def board_info(self, link: BoardLinkLike, info: Info) -> None:
        self.state.board_info(link.address, info, self.state.now())

    def report(self, link: BoardLinkLike, report: Report, received_at: float) -> None:
        self.state.apply_report(link.address, report, received_at)

    def telemetry(self, link: BoardLinkLike, telemetry: Telemetry, received_at: float) -> None:
        self._link(link)  # once per detail rotation: often enough for link figures
        self.state.apply_telemetry(link.address, telemetry, received_at)

    def status(self, link: BoardLinkLike, status: Status, received_at: float) -> None:
        self._link(link)
        self.state.apply_status(link.address, status, received_at)
