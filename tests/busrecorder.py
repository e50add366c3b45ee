"""A bus master listener for tests: every accepted frame, by board address."""

from __future__ import annotations

from dataclasses import dataclass, field

from host.busmaster import BoardLink
from protocol import consts as C
from protocol.messages import Info, Report, Status, Telemetry


@dataclass
class Recorder:
    """The bus master's listener: every accepted frame, by board address."""

    infos: dict[int, Info] = field(default_factory=dict)
    telemetries: dict[int, list[tuple[float, Telemetry]]] = field(default_factory=dict)
    reports: dict[int, list[tuple[float, Report]]] = field(default_factory=dict)
    statuses: list[tuple[float, Status]] = field(default_factory=list)
    online: list[int] = field(default_factory=list)
    offline: list[int] = field(default_factory=list)

    def board_online(self, link: BoardLink) -> None:
        self.online.append(link.address)

    def board_offline(self, link: BoardLink) -> None:
        self.offline.append(link.address)

    def board_info(self, link: BoardLink, info: Info) -> None:
        self.infos[link.address] = info

    def report(self, link: BoardLink, report: Report, received_at: float) -> None:
        self.reports.setdefault(link.address, []).append((received_at, report))

    def telemetry(self, link: BoardLink, telemetry: Telemetry, received_at: float) -> None:
        self.telemetries.setdefault(link.address, []).append((received_at, telemetry))

    def status(self, link: BoardLink, status: Status, received_at: float) -> None:
        self.statuses.append((received_at, status))

    def groups(self) -> dict[str, int]:
        """Board address by group letter (group boards only)."""
        return {
            info.group: address
            for address, info in self.infos.items()
            if info.board_type in (C.BOARD_SIM, C.BOARD_PICO_MCP3208)
        }

    def latest_currents(self, address: int, since: float) -> list[float] | None:
        """The newest TELEMETRY currents (A) received after ``since``."""
        rows = [t for at, t in self.telemetries.get(address, []) if at >= since]
        return None if not rows else [ca / 100 for ca in rows[-1].centiamps]
