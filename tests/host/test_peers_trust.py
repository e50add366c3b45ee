"""The site's trust set (host.peers.trust): signed records, who may write them, last writer
wins, removal, joining, persistence."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from host.peers.identity import Identity
from host.peers.trust import Record, RecordError, TrustSet, parse_record

A, B, C, D = "smartPDU0000A1", "smartPDU0000B1", "smartPDU0000C1", "smartPDU0000D1"


def unit(uid: str, folder: Path | None = None) -> TrustSet:
    return TrustSet(uid, Identity.generate(), folder)


def key(trust: TrustSet) -> str:
    return trust.identity.public_hex


def records(trust: TrustSet) -> list[Record]:
    return [parse_record(raw) for raw in trust.wire()]


def test_a_record_counts_only_when_signed_by_a_trusted_unit() -> None:
    a, b, c = unit(A), unit(B), unit(C)
    a.adopt(C, key(c))
    assert b.merge(records(a)) is False  # B does not trust A (yet): nothing taken
    assert b.state(C, key(c)) is None
    b.adopt(A, key(a))
    assert b.merge(records(a)) is True and b.state(C, key(c)) == "adopted"
    assert b.merge(records(a)) is False  # the same again: nothing new


def test_a_tampered_or_misattributed_record_is_ignored() -> None:
    a, b, rogue = unit(A), unit(B), Identity.generate()
    b.adopt(A, key(a))
    a.adopt(C, "c" * 64)
    (record,) = records(a)
    assert not b.merge([replace(record, key="d" * 64)])  # altered after signing
    assert not b.merge([replace(record, t=record.t + 5)])
    # Signed with another key in A's name: A's adopted key is not that one.
    forged = Record("adopt", D, "d" * 64, 9, A, rogue.public_hex, "")
    forged = replace(forged, sig=rogue.sign(forged.signed_bytes()))
    assert not b.merge([forged]) and b.state(D, "d" * 64) is None
    # Nobody adopts itself.
    self_made = Record("adopt", A, key(a), 9, A, key(a), "")
    assert not b.merge([replace(self_made, sig=a.identity.sign(self_made.signed_bytes()))])


def test_last_writer_wins_and_a_removal_spreads() -> None:
    a, b, c = unit(A), unit(B), unit(C)
    a.adopt(B, key(b))
    b.adopt(A, key(a))
    a.adopt(C, key(c))
    b.merge(records(a))
    assert b.state(C, key(c)) == "adopted"
    b.remove(C)  # removed on B (a later Lamport time than A's adoption) ...
    assert b.state(C, key(c)) == "removed" and not b.adopted_keys(C)
    assert a.merge(records(b)) and a.state(C, key(c)) == "removed"  # ... and so on A
    assert not b.merge(records(a))  # A's older adoption does not bring it back
    a.adopt(C, key(c))  # adopted again, later: wins again everywhere
    assert b.merge(records(a)) and b.state(C, key(c)) == "adopted"
    assert b.remove(D) is False


def test_a_new_unit_adopted_by_one_joins_that_ones_site() -> None:
    a, b, d = unit(A), unit(B), unit(D)
    a.adopt(B, key(b))
    b.adopt(A, key(a))
    a.adopt(D, key(d))  # the admin adopts the new unit D on A, once
    assert b.merge(records(a)) and b.state(D, key(d)) == "adopted"
    assert not d.has_site()
    assert d.merge(records(a))  # D adopted nobody: it adopts A in return, and A's records
    assert d.state(A, key(a)) == "adopted" and d.state(B, key(b)) == "adopted"
    assert all(r["op"] != "join" for r in d.wire())  # a join stays on D
    # A unit of a site does not join another one that adopts it.
    e, other = unit("smartPDU0000E1"), unit("smartPDU0000F1")
    e.adopt(B, key(b))
    other.adopt("smartPDU0000E1", key(e))
    assert not e.merge(records(other)) and e.state("smartPDU0000F1", key(other)) is None


def test_the_trust_set_survives_a_restart(tmp_path: Path) -> None:
    identity = Identity.load(tmp_path)
    a = TrustSet(A, identity, tmp_path)
    b, c = unit(B), unit(C)
    a.adopt(B, key(b))
    a.adopt(C, key(c))
    a.remove(C)
    again = TrustSet(A, identity, tmp_path)
    assert again.state(B, key(b)) == "adopted" and again.state(C, key(c)) == "removed"
    assert again.lamport == a.lamport
    saved = json.loads((tmp_path / "peer-trust.json").read_text())
    saved["records"][0]["id"] = D  # edited by hand: its signature no longer holds
    (tmp_path / "peer-trust.json").write_text(json.dumps(saved))
    assert len(TrustSet(A, identity, tmp_path).records) == 1


@pytest.mark.parametrize(
    "change",
    [{"op": "join"}, {"id": "x"}, {"t": 0}, {"t": 1.5}, {"key": "AB" * 32}, {"sig": "0"}, {"x": 1}],
)
def test_records_out_of_schema_are_refused(change: dict[str, object]) -> None:
    a = unit(A)
    a.adopt(B, "b" * 64)
    with pytest.raises(RecordError):
        parse_record({**a.wire()[0], **change})


def test_a_joining_unit_follows_the_chain_of_roots() -> None:
    """A, B and C adopted each other, each taking the others' records too; the newest record
    of B's and C's adoptions on A may be signed by C and B. D, adopted by A and trusting only
    A, still comes to trust B and C: A also sends the first adoption it took of each (its)."""
    a, b, c, d = unit(A), unit(B), unit(C), unit(D)
    a.adopt(B, key(b))
    a.adopt(C, key(c))
    b.adopt(A, key(a))
    c.adopt(A, key(a))
    b.merge(records(a))
    c.merge(records(a))
    b.adopt(C, key(c))  # already adopted on B (by A's record): no new record
    c.remove(B)
    c.merge(records(a))  # A's adoption of B is older than C's removal: B stays removed on C
    b.lamport += 10
    b.records.pop((C, key(c)))
    b.adopt(C, key(c))  # a newer adoption of C, signed by B
    c.lamport += 20
    c.adopt(B, key(b))  # a newer adoption of B, signed by C
    a.merge(records(b) + records(c))
    assert a.records[(B, key(b))].by == C and a.records[(C, key(c))].by == B
    a.adopt(D, key(d))
    assert d.merge(records(a))
    assert d.state(B, key(b)) == "adopted" and d.state(C, key(c)) == "adopted"
