"""The site's trust set: which units (id and key) are adopted, as signed records that travel.

A record says "``by`` adopts (or removes) unit ``id`` with key ``key``", signed with ``by``'s
key, at Lamport time ``t``. A unit takes in a record only when its signer is itself or an
adopted unit, keeps the newest record per (id, key) (last writer wins, ``t`` then ``by``),
and sends its whole set in every envelope. It also keeps and sends the first adoption it took
of each unit (its *root*): every record is taken because its signer was trusted then, so the
roots always chain back to the unit that took them, and a unit that trusts that one can
follow the chain even where newer records of the same adoption were signed by others. So
adopting a unit on one unit adopts it on every unit that trusts that one, and a removal
spreads the same way.

Joining: a unit that has adopted nobody yet, handed a record in which a unit adopts it, adopts
that unit in return (a ``join`` record, honoured only by the unit that wrote it, never sent):
one click on any unit of the site brings a new unit in, both ways. The site key shortcut
(``peers.site_key``): a unit proving the same site key is adopted by a record as if an admin
had clicked, unless a record already removed it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from host.domain import UNIT_ID_PATTERN
from host.peers.identity import Identity, canonical_json, verify, write_atomic

_LOG = logging.getLogger(__name__)

TRUST_FILE = "peer-trust.json"
MAX_RECORDS = 400
_DOMAIN = b"smartpdu-trust/2\n"
_RECORD_KEYS = frozenset({"op", "id", "key", "t", "by", "bykey", "sig"})
Op = Literal["adopt", "remove", "join"]
State = Literal["adopted", "removed"]


class RecordError(ValueError):
    """A trust record out of schema."""


@dataclass(frozen=True)
class Record:
    op: Op
    id: str
    key: str
    t: int
    by: str
    bykey: str
    sig: str

    def body(self) -> dict[str, Any]:
        return {"op": self.op, "id": self.id, "key": self.key, "t": self.t,
                "by": self.by, "bykey": self.bykey}  # fmt: skip

    def signed_bytes(self) -> bytes:
        return _DOMAIN + canonical_json(self.body())

    def to_wire(self) -> dict[str, Any]:
        return {**self.body(), "sig": self.sig}


def _hex(value: object, digits: int, where: str) -> str:
    if not isinstance(value, str) or len(value) != digits or value.strip("0123456789abcdef"):
        raise RecordError(f"{where}: expected {digits} lowercase hex digits")
    return value


def parse_record(value: object) -> Record:
    """A record from the wire (schema only: the signature is checked on merge)."""
    if not isinstance(value, dict) or set(value) != _RECORD_KEYS:  # pyright: ignore[reportUnknownArgumentType]
        raise RecordError("trust record: unexpected keys")
    data: dict[str, Any] = value  # pyright: ignore[reportUnknownVariableType]
    op = data["op"]
    if op not in ("adopt", "remove"):
        raise RecordError("trust record: op is adopt or remove")
    for field in ("id", "by"):
        if not isinstance(data[field], str) or not UNIT_ID_PATTERN.fullmatch(data[field]):
            raise RecordError(f"trust record: {field} is not a unit id")
    t = data["t"]
    if type(t) is not int or not 0 < t < 1 << 53:
        raise RecordError("trust record: t is a positive integer")
    return Record(op, data["id"], _hex(data["key"], 64, "key"), t, data["by"],
                  _hex(data["bykey"], 64, "bykey"), _hex(data["sig"], 128, "sig"))  # fmt: skip


class TrustSet:
    """The records this unit holds; ``folder`` keeps them across restarts (None: memory)."""

    def __init__(self, unit_id: str, identity: Identity, folder: Path | None = None) -> None:
        self.unit_id = unit_id
        self.identity = identity
        self.records: dict[tuple[str, str], Record] = {}  # the newest per (id, key)
        self.roots: dict[tuple[str, str], Record] = {}  # the first adoption taken, kept
        self.lamport = 0
        self._path = None if folder is None else folder / TRUST_FILE
        self._verified: set[str] = set()  # signatures already checked
        self._load()

    # -- queries -----------------------------------------------------------------------------

    def state(self, unit_id: str, key: str) -> State | None:
        record = self.records.get((unit_id, key))
        if record is None:
            return None
        return "removed" if record.op == "remove" else "adopted"

    def adopted_keys(self, unit_id: str) -> set[str]:
        return {k for (uid, k), r in self.records.items() if uid == unit_id and r.op != "remove"}

    def trusts(self, unit_id: str, key: str) -> bool:
        """A signer whose records count: this unit, or one adopted."""
        if unit_id == self.unit_id:
            return key == self.identity.public_hex
        return self.state(unit_id, key) == "adopted"

    def has_site(self) -> bool:
        return any(r.op != "remove" for r in self.records.values())

    def wire(self) -> list[dict[str, Any]]:
        """The records that travel (``join`` ones stay here), newest first."""
        both = {r.sig: r for r in [*self.records.values(), *self.roots.values()]}
        out = sorted((r for r in both.values() if r.op != "join"), key=lambda r: -r.t)
        return [r.to_wire() for r in out[:MAX_RECORDS]]

    def rows(self) -> list[dict[str, Any]]:
        return [{"id": r.id, "key": r.key, "op": r.op, "by": r.by, "t": r.t}
                for r in sorted(self.records.values(), key=lambda r: (r.id, r.t))]  # fmt: skip

    # -- changes -----------------------------------------------------------------------------

    def adopt(self, unit_id: str, key: str) -> bool:
        """This unit's admin (or the site key) adopts ``unit_id`` with ``key``."""
        if self.state(unit_id, key) == "adopted":
            return False
        return self._write("adopt", unit_id, key)

    def remove(self, unit_id: str) -> bool:
        """Un-adopt every key of ``unit_id``; True when something was adopted."""
        keys = self.adopted_keys(unit_id)
        for key in keys:
            self._write("remove", unit_id, key, save=False)
        if keys:
            self._save()
        return bool(keys)

    def _write(self, op: Op, unit_id: str, key: str, *, save: bool = True) -> bool:
        self.lamport += 1
        body = Record(op, unit_id, key, self.lamport, self.unit_id, self.identity.public_hex, "")
        record = Record(**{**body.__dict__, "sig": self.identity.sign(body.signed_bytes())})
        self._verified.add(record.sig)
        self._store(record)
        _LOG.info("unit %s (key %s…) %s here", unit_id, key[:8], op)
        if save:
            self._save()
        return True

    def merge(self, incoming: Iterable[Record]) -> bool:
        """Take in the records signed by units this one trusts; True when the set changed."""
        pending = [r for r in incoming if r.by != r.id]  # nobody adopts itself
        changed = False
        progress = True
        while pending and progress:
            progress = False
            waiting: list[Record] = []
            for record in pending:
                if not self.trusts(record.by, record.bykey):
                    waiting.append(record)
                    continue
                progress = True
                changed |= self._take(record)
            pending = waiting
            if pending and not progress and not self.has_site():
                progress = self._join(pending)
                changed |= progress
        if changed:
            self._save()
        return changed

    def _store(self, record: Record) -> None:
        member = (record.id, record.key)
        self.records[member] = record
        if record.op == "remove":
            self.roots.pop(member, None)
        else:
            self.roots.setdefault(member, record)

    def _take(self, record: Record) -> bool:
        member = (record.id, record.key)
        current = self.records.get(member)
        if current is not None and (current.t, current.by) >= (record.t, record.by):
            if current.op != "remove" and member not in self.roots and self._valid(record):
                self.roots[member] = record  # an older adoption: the root to pass on
            return False
        if current is not None and current.op == "join" and record.op == "adopt":
            return False  # already adopted, by joining
        if not self._valid(record):
            return False
        self._store(record)
        self.lamport = max(self.lamport, record.t)
        return True

    def _join(self, pending: list[Record]) -> bool:
        """Adopted by another unit while adopting nobody: adopt it back (see the module doc)."""
        for record in pending:
            mine = record.id == self.unit_id and record.key == self.identity.public_hex
            if mine and record.op == "adopt" and self._valid(record):
                _LOG.info("adopted by %s: joining its site", record.by)
                self._write("join", record.by, record.bykey, save=False)
                return True
        return False

    def _valid(self, record: Record) -> bool:
        if record.sig in self._verified:
            return True
        if not verify(record.bykey, record.signed_bytes(), record.sig):
            return False
        if len(self._verified) > 4 * MAX_RECORDS:
            self._verified.clear()
        self._verified.add(record.sig)
        return True

    # -- storage -----------------------------------------------------------------------------

    def _load(self) -> None:
        if self._path is None:
            return
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            _LOG.error("%s unreadable (%s): no unit adopted until re-adopted", self._path, exc)
            return
        loaded: list[Record] = []
        for raw in data.get("records", []) if isinstance(data, dict) else []:  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            own_join = isinstance(raw, dict) and raw.get("op") == "join"  # pyright: ignore[reportUnknownMemberType]
            try:
                record = parse_record({**raw, "op": "adopt"} if own_join else raw)  # pyright: ignore[reportUnknownArgumentType]
            except RecordError:
                continue
            if own_join:
                record = Record(**{**record.__dict__, "op": "join"})
            if record.op == "join" or self._valid(record):
                loaded.append(record)
        for record in sorted(loaded, key=lambda r: (r.t, r.by)):  # roots first, newest last
            self._store(record)
            self.lamport = max(self.lamport, record.t)

    def _save(self) -> None:
        if self._path is None:
            return
        both = {r.sig: r for r in [*self.records.values(), *self.roots.values()]}
        body = {"v": 2, "records": [r.to_wire() for r in both.values()]}
        try:
            write_atomic(self._path, json.dumps(body, indent=1).encode(), 0o644)
        except OSError as exc:
            _LOG.error("cannot save %s: %s", self._path, exc)
