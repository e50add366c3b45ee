"""The other units this one knows: merging what envelopes say about them, and who is reachable.

A unit is *reachable* while its newest summary, direct or relayed, is younger than
``offline_after_s``; shown offline after that, and forgotten after ``forget_after_s``.
Presence is only ever proven by signed, fresh data (the exchange hands in verified
envelopes only). Numbers follow detection order and survive restarts
(``Storage.unit_number``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from host.peers.envelope import MAX_UNITS, Envelope, UnitSummary
from host.peers.settings import PeerSettings

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerUnit:
    """A peer as pane A shows it (:meth:`to_row` is a ``GET /api/v1/units`` row)."""

    id: str
    name: str  # shown: the unit's own name, else "smartPDU <number>"
    custom_name: str
    number: int | None  # detection order on this unit
    model: int
    url: str | None  # its web interface
    l1: float | None  # None while it is not reachable: no stale figures in pane A
    l2: float | None
    l3: float | None
    n: float | None
    source: str
    warning: bool
    tripped: bool
    online: bool  # reachable and its boards or meter live
    reachable: bool  # a fresh signed summary arrived within offline_after_s
    alarms: int
    last_seen_s: float  # age of its newest summary
    via: Literal["direct", "relay"]

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "custom_name": self.custom_name,
            "number": self.number, "model": self.model, "url": self.url, "local": False,
            "l1": self.l1, "l2": self.l2, "l3": self.l3, "n": self.n, "source": self.source,
            "warning": self.warning, "tripped": self.tripped, "online": self.online,
            "reachable": self.reachable, "alarms": self.alarms,
            "last_seen_s": round(self.last_seen_s, 1), "via": self.via,
        }  # fmt: skip


class Numbering(Protocol):
    """Detection-order numbers (``host.storage.Storage`` is one)."""

    async def unit_number(self, unit_id: str) -> int: ...


class MemoryNumbering:
    """Numbers kept in memory only (tests, and a unit without storage)."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    async def unit_number(self, unit_id: str) -> int:
        return self._numbers.setdefault(unit_id, len(self._numbers) + 1)


@dataclass
class KnownUnit:
    summary: UnitSummary
    last_seen: float  # monotonic time of its newest summary (now - its age)
    number: int | None
    heard_at: float | None = None  # last summary from the unit itself (its request or answer)
    answered_url: str | None = None  # the address of its last answer to us
    answered_at: float | None = None
    reachable: bool = True
    number_tried_at: float = 0.0


class KnownUnits:
    """Every other unit known, by id, and this unit's own detection-order number."""

    def __init__(
        self,
        unit_id: str,
        settings: PeerSettings,
        numbering: Numbering,
        stats: dict[str, int],
        clock: Callable[[], float],
    ) -> None:
        self.unit_id = unit_id
        self.settings = settings
        self.by_id: dict[str, KnownUnit] = {}
        self.number: int | None = None  # this unit's own number
        self._numbering = numbering
        self._stats = stats
        self._clock = clock
        self._merge_lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, unit_id: str) -> KnownUnit | None:
        return self.by_id.get(unit_id)

    def units(self) -> list[PeerUnit]:
        """Every other unit known, in detection order."""
        now = self._clock()
        out = [self.peer_unit(known, now) for known in self.by_id.values()]
        out.sort(key=lambda u: (u.number is None, u.number or 0, u.id))
        return out

    def reachable_count(self) -> int:
        return sum(1 for k in self.by_id.values() if k.reachable)

    def relayed(self, now: float) -> list[tuple[UnitSummary, float]]:
        """What an envelope says about the others: the freshest first, (summary, age)."""
        units: list[tuple[UnitSummary, float]] = []
        others = sorted(self.by_id.values(), key=lambda k: -k.last_seen)
        for known in others[: MAX_UNITS - 1]:
            age = now - known.last_seen
            if age <= self.settings.forget_after_s:
                units.append((known.summary, age))
        return units

    async def number_of(self, unit_id: str) -> int | None:
        try:
            return await self._numbering.unit_number(unit_id)
        except Exception as exc:  # a failing disk: shown unnumbered, tried again later
            _LOG.warning("cannot number unit %s: %s", unit_id, exc)
            return None

    async def merge(
        self, envelope: Envelope, answered_url: str | None, add_url: Callable[[str], None]
    ) -> bool:
        """Take in a verified, fresh envelope (``answered_url``: it answered our request);
        ``add_url`` gets every address it names. True when pane A changed."""
        changed = False
        async with self._merge_lock:
            if self.number is None:  # this unit comes first in its own detection order
                self.number = await self.number_of(self.unit_id)
            now = self._clock()
            for summary, age in envelope.units:
                if summary.id == self.unit_id or age > self.settings.forget_after_s:
                    continue
                seen = now - age
                direct = summary.id == envelope.sender
                known = self.by_id.get(summary.id)
                if known is None:
                    if len(self.by_id) >= MAX_UNITS:
                        continue
                    known = KnownUnit(summary, seen, await self.number_of(summary.id))
                    known.number_tried_at = now
                    self.by_id[summary.id] = known
                    self._stats["units_found"] += 1
                    _LOG.info(
                        "unit %s found (%s, via %s)",
                        summary.id,
                        ", ".join(summary.urls) or "no address",
                        "itself" if direct else envelope.sender,
                    )
                    changed = True
                elif seen > known.last_seen:
                    changed |= known.summary != summary
                    known.summary = summary
                    known.last_seen = seen
                if direct:
                    known.heard_at = now
                    if answered_url is not None:
                        known.answered_url = answered_url
                        known.answered_at = now
                if known.number is None and now - known.number_tried_at >= 10.0:
                    known.number_tried_at = now
                    known.number = await self.number_of(summary.id)
                    changed |= known.number is not None
                for url in summary.urls:
                    add_url(url)
            changed |= self.update_reachability(now)
        return changed

    def update_reachability(self, now: float) -> bool:
        """Mark who went offline or came back; True when anyone did."""
        changed = False
        for known in self.by_id.values():
            reachable = now - known.last_seen <= self.settings.offline_after_s
            if reachable != known.reachable:
                known.reachable = reachable
                changed = True
                _LOG.info(
                    "unit %s %s",
                    known.summary.id,
                    "is back"
                    if reachable
                    else f"is offline (silent {now - known.last_seen:.1f} s)",
                )
        return changed

    def forget_silent(self, now: float) -> list[str]:
        """Drop the units silent for longer than ``forget_after_s``; their ids."""
        gone = [
            uid
            for uid, known in self.by_id.items()
            if now - known.last_seen > self.settings.forget_after_s
        ]
        for uid in gone:
            del self.by_id[uid]
            self._stats["units_forgotten"] += 1
            _LOG.info("unit %s forgotten (silent %.0f s)", uid, self.settings.forget_after_s)
        return gone

    def urls(self) -> set[str]:
        """Every address the known units announce."""
        return {url for known in self.by_id.values() for url in known.summary.urls}

    def peer_unit(self, known: KnownUnit, now: float) -> PeerUnit:
        s = known.summary
        age = max(0.0, now - known.last_seen)
        reachable = age <= self.settings.offline_after_s
        window = self.settings.offline_after_s
        direct = known.heard_at is not None and now - known.heard_at <= window
        return PeerUnit(
            id=s.id,
            name=s.name or (f"smartPDU {known.number}" if known.number else "smartPDU"),
            custom_name=s.name,
            number=known.number,
            model=s.model,
            url=known.answered_url or (s.urls[0] if s.urls else None),
            l1=s.l1 if reachable else None,
            l2=s.l2 if reachable else None,
            l3=s.l3 if reachable else None,
            n=s.n if reachable else None,
            source=s.source if reachable else "none",
            warning=s.warning,
            tripped=s.tripped,
            online=reachable and s.online,
            reachable=reachable,
            alarms=s.alarms,
            last_seen_s=age,
            via="direct" if direct else "relay",
        )
