"""The other units this one knows: merging what envelopes say about them, and who is reachable.

Two kinds of unit are listed. *Adopted* ones (their id and key in the trust set,
``host.peers.trust``) show their figures and alarms, directly or relayed by another adopted
unit. *Discovered* ones (a unit that answered or posted with a statement signed by its own,
not adopted key) are listed with name and address only, for an admin to adopt; they are never
relayed and are forgotten after ``DISCOVERED_FORGET_S`` of silence.

A statement counts only when it is newer (its counter) than the last one taken from that unit;
one for an id whose adopted key is another, or for this unit's own id, is dropped and counted.
A unit is *reachable* while its newest statement is younger than ``offline_after_s``; shown
offline after that, and forgotten after ``forget_after_s``. Numbers follow detection order of
adopted units and survive restarts (``Storage.unit_number``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from host.peers.envelope import MAX_UNITS, Envelope, Statement, UnitSummary
from host.peers.identity import SiteKey, fingerprint
from host.peers.settings import PeerSettings
from host.peers.trust import TrustSet

_LOG = logging.getLogger(__name__)

MAX_DISCOVERED = 32  # listed at once; the stalest goes first (a flood cannot fill the list)
DISCOVERED_FORGET_S = 60.0
Trust = Literal["adopted", "discovered"]


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
    trust: Trust = "adopted"
    fingerprint: str = ""  # of its key, for the admin to compare before adopting

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "custom_name": self.custom_name,
            "number": self.number, "model": self.model, "url": self.url, "local": False,
            "l1": self.l1, "l2": self.l2, "l3": self.l3, "n": self.n, "source": self.source,
            "warning": self.warning, "tripped": self.tripped, "online": self.online,
            "reachable": self.reachable, "alarms": self.alarms,
            "last_seen_s": round(self.last_seen_s, 1), "via": self.via,
            "trust": self.trust, "fingerprint": self.fingerprint,
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
    statement: Statement
    last_seen: float  # monotonic time of its newest summary (now - its age)
    number: int | None
    trust: Trust = "adopted"
    heard_at: float | None = None  # last summary from the unit itself (its request or answer)
    answered_url: str | None = None  # the address of its last answer to us
    answered_at: float | None = None
    reachable: bool = True
    number_tried_at: float = 0.0

    @property
    def summary(self) -> UnitSummary:
        return self.statement.summary

    @property
    def ctr(self) -> int:
        return self.statement.ctr


class KnownUnits:
    """Every other unit known, by id, and this unit's own detection-order number."""

    def __init__(
        self,
        unit_id: str,
        settings: PeerSettings,
        numbering: Numbering,
        stats: dict[str, int],
        clock: Callable[[], float],
        *,
        trust: TrustSet,
        site: SiteKey,
    ) -> None:
        self.unit_id = unit_id
        self.settings = settings
        self.trust = trust
        self.site = site
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
        """Every other unit known: the adopted in detection order, then the discovered."""
        now = self._clock()
        out = [self.peer_unit(known, now) for known in self.by_id.values()]
        out.sort(key=lambda u: (u.trust != "adopted", u.number is None, u.number or 0, u.id))
        return out

    def reachable_count(self) -> int:
        return sum(1 for k in self.by_id.values() if k.reachable and k.trust == "adopted")

    def relayed(self, now: float) -> list[tuple[Statement, float]]:
        """The adopted units' statements an envelope passes on: the freshest first."""
        units: list[tuple[Statement, float]] = []
        others = sorted(self.by_id.values(), key=lambda k: -k.last_seen)
        for known in others:
            age = now - known.last_seen
            if known.trust == "adopted" and age <= self.settings.forget_after_s:
                units.append((known.statement, age))
        return units[: MAX_UNITS - 1]

    async def number_of(self, unit_id: str) -> int | None:
        try:
            return await self._numbering.unit_number(unit_id)
        except Exception as exc:  # a failing disk: shown unnumbered, tried again later
            _LOG.warning("cannot number unit %s: %s", unit_id, exc)
            return None

    # -- trust -------------------------------------------------------------------------------

    def classify(self, statement: Statement) -> Trust | None:
        """Adopted, discovered, or None: an id whose adopted key is another (an impostor).
        A unit proving the site key is adopted here and now (unless it was removed)."""
        uid, key = statement.summary.id, statement.key
        state = self.trust.state(uid, key)
        if state == "adopted":
            return "adopted"
        if self.trust.adopted_keys(uid):
            return None
        if state is None and self.site.proves(uid, key, statement.site):
            self.trust.adopt(uid, key)
            return "adopted"
        return "discovered"

    def is_replay(self, statement: Statement) -> bool:
        """A sender's own statement no newer than the last one taken from it."""
        known = self.by_id.get(statement.summary.id)
        return (
            known is not None
            and known.statement.key == statement.key
            and (statement.ctr <= known.ctr)
        )

    async def retrust(self) -> bool:
        """The trust set changed (an adoption, a removal, records merged): re-sort every
        known unit; impostors of newly adopted keys go. True when pane A changed."""
        changed = False
        for uid, known in list(self.by_id.items()):
            trust = self.classify(known.statement)
            if trust is None:
                del self.by_id[uid]
                changed = True
            elif trust != known.trust:
                known.trust = trust
                if trust == "adopted" and known.number is None:
                    known.number = await self.number_of(uid)
                changed = True
        return changed

    # -- merging -----------------------------------------------------------------------------

    async def merge(
        self, envelope: Envelope, answered_url: str | None, add_url: Callable[[str], None]
    ) -> bool:
        """Take in an envelope whose sender's own statement is verified (``answered_url``: it
        answered our request); ``add_url`` gets every address of the units taken. True when
        pane A changed."""
        changed = False
        async with self._merge_lock:
            if self.number is None:  # this unit comes first in its own detection order
                self.number = await self.number_of(self.unit_id)
            if self.trust.merge(envelope.trust):
                changed |= await self.retrust()
            now = self._clock()
            relays_ok = self.classify(envelope.own) == "adopted"
            for index, (statement, age) in enumerate(envelope.units):
                if index > 0 and not relays_ok:
                    break  # a unit not adopted passes nothing on
                changed |= await self._take(statement, age, now, index == 0, envelope.sender)
                known = self.by_id.get(statement.summary.id)
                if known is None or known.statement.key != statement.key:
                    continue  # not taken: none of its addresses either
                if index == 0 and answered_url is not None:
                    known.answered_url = answered_url
                    known.answered_at = now
                for url in statement.summary.urls:
                    add_url(url)
            changed |= self.update_reachability(now)
        return changed

    async def _take(
        self, statement: Statement, age: float, now: float, direct: bool, sender: str
    ) -> bool:
        """One statement into the list (``direct``: the sender's own). True when pane A
        changed."""
        uid = statement.summary.id
        if uid == self.unit_id or age > self.settings.forget_after_s:
            return False
        trust = self.classify(statement)
        known = self.by_id.get(uid)
        if trust is None or (known is not None and known.statement.key != statement.key):
            self._stats["rejected_impostor"] += 1
            return False
        if not direct and trust != "adopted":
            return False
        if known is not None and statement.ctr <= known.ctr:
            if direct:
                known.heard_at = now
            return False  # what we have is as new (a relay lagging behind)
        if not direct and not statement.verified():
            self._stats["rejected_signature"] += 1
            return False
        seen = now - age
        if known is None:
            if not self._make_room(trust):
                return False
            number = await self.number_of(uid) if trust == "adopted" else None
            known = KnownUnit(statement, seen, number, trust, number_tried_at=now)
            self.by_id[uid] = known
            self._stats["units_found"] += 1
            _LOG.info("unit %s %s (%s, via %s)", uid, trust, ", ".join(statement.summary.urls)
                      or "no address", "itself" if direct else sender)  # fmt: skip
            changed = True
        else:
            changed = known.summary != statement.summary or known.trust != trust
            known.statement, known.trust = statement, trust
            known.last_seen = max(known.last_seen, seen)
        if direct:
            known.heard_at = now
        if trust == "adopted" and known.number is None and now - known.number_tried_at >= 10.0:
            known.number_tried_at = now
            known.number = await self.number_of(uid)
            changed |= known.number is not None
        return changed

    def _make_room(self, trust: Trust) -> bool:
        if len(self.by_id) >= MAX_UNITS and trust != "adopted":
            return False
        discovered = [k for k in self.by_id.values() if k.trust == "discovered"]
        if len(discovered) >= MAX_DISCOVERED or len(self.by_id) >= MAX_UNITS:
            if not discovered:
                return False
            stalest = min(discovered, key=lambda k: k.last_seen)
            del self.by_id[stalest.summary.id]
        return True

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
        """Drop the units silent for longer than ``forget_after_s`` (discovered ones:
        ``DISCOVERED_FORGET_S``); their ids."""
        discovered_s = min(DISCOVERED_FORGET_S, self.settings.forget_after_s)
        gone = [
            uid
            for uid, known in self.by_id.items()
            if now - known.last_seen
            > (self.settings.forget_after_s if known.trust == "adopted" else discovered_s)
        ]
        for uid in gone:
            del self.by_id[uid]
            self._stats["units_forgotten"] += 1
            _LOG.info("unit %s forgotten (silent)", uid)
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
        shown = reachable and known.trust == "adopted"  # a discovered unit: name, address
        default_name = f"smartPDU {known.number}" if known.number else s.id
        return PeerUnit(
            id=s.id,
            name=s.name or default_name,
            custom_name=s.name,
            number=known.number,
            model=s.model,
            url=known.answered_url or (s.urls[0] if s.urls else None),
            l1=s.l1 if shown else None,
            l2=s.l2 if shown else None,
            l3=s.l3 if shown else None,
            n=s.n if shown else None,
            source=s.source if shown else "none",
            warning=s.warning and known.trust == "adopted",
            tripped=s.tripped and known.trust == "adopted",
            online=shown and s.online,
            reachable=reachable,
            alarms=s.alarms if known.trust == "adopted" else 0,
            last_seen_s=age,
            via="direct" if direct else "relay",
            trust=known.trust,
            fingerprint=fingerprint(known.statement.key),
        )
