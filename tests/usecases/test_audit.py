"""The audit log: appends take no lock, the sequencer places every committed event once, and every change
made underneath it (edited, deleted, reordered, inserted, cut) is caught by verify, by an export's proofs
against a kept head, or by a consistency proof. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from clerk.store import audit, caseindex, heads, tree
from models import merkle
from models.tables import AuditCase, AuditEvent, AuditIndexTile

CASE = "（2024）豫0185执{}号"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write(sessions: sessionmaker[Session], first: int, count: int) -> None:
    with sessions.begin() as s:
        for i in range(first, first + count):
            audit.append(
                s,
                "test.event",
                actor=audit.Actor.SYSTEM,
                case_number=CASE.format(i % 3 + 1),
                payload={"n": i, "debtor": "11010519491231002X"},
            )


@pytest.fixture
def log(sessions: sessionmaker[Session], key: Ed25519PrivateKey) -> sessionmaker[Session]:
    """Nine events in two signed heads (5, then 9)."""
    write(sessions, 1, 5)
    tree.sequence(sessions, key)
    write(sessions, 6, 4)
    tree.sequence(sessions, key, batch=3)  # several batches, one head
    return sessions


def tamper(engine: Engine, *statements: str) -> None:
    """Change the tables the way an intruder with the database owner's rights would: triggers off."""
    with engine.begin() as conn:
        for table in ("audit_events", "audit_nodes", "audit_heads"):
            if engine.dialect.name == "sqlite":
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
            else:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for statement in statements:
            conn.execute(text(statement))


def verify(
    sessions: sessionmaker[Session], key: Ed25519PrivateKey | None = None, kept: heads.KeptHead | None = None
) -> tree.Verification:
    with sessions() as s:
        return tree.verify(s, key.public_key() if key else None, kept)


def export(sessions: sessionmaker[Session], case: int = 1, since: heads.KeptHead | None = None) -> dict:
    with sessions() as s:
        head = tree.latest_head(s)
        assert head is not None
        return tree.case_export(s, CASE.format(case), head, since)


def test_intact_log_verifies_and_payload_is_masked(
    log: sessionmaker[Session], key: Ed25519PrivateKey
) -> None:
    result = verify(log, key)
    assert (result.ok, result.events, result.placed, result.heads) == (True, 9, 9, 2)
    with log() as s:
        payloads = [e.payload for e in audit.case_events(s, CASE.format(3))]
        positions = s.scalars(select(AuditEvent.position).order_by(AuditEvent.seq)).all()
    assert positions == list(range(9))
    assert len(payloads) == 3
    assert "11010519491231002X" not in payloads[0] and "1101**********002X" in payloads[0]


def test_verify_tells_how_far_it_has_come(
    log: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree, "BATCH", 4)
    seen: list[tuple[int, int]] = []
    with log() as s:
        assert tree.verify(s, progress=lambda done, total: seen.append((done, total))).ok
    assert seen == [(0, 9), (4, 9), (8, 9), (9, 9)]


def test_signatures_are_checked_with_the_courts_key(log: sessionmaker[Session]) -> None:
    other = Ed25519PrivateKey.generate()
    result = verify(log, other)
    assert not result.ok and "was signed with key" in (result.reason or "")


@pytest.mark.parametrize("statement", ["UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"])
def test_the_log_refuses_update_and_delete(log: sessionmaker[Session], statement: str) -> None:
    with pytest.raises(DatabaseError, match="append-only"), log.begin() as s:
        s.execute(text(statement))
    assert verify(log).events == 9


def test_a_placed_event_cannot_be_moved_and_nodes_and_heads_cannot_change(log: sessionmaker[Session]) -> None:
    for statement in (
        "UPDATE audit_events SET position = 99 WHERE position = 3",
        "UPDATE audit_nodes SET level = 9",
        "DELETE FROM audit_heads",
    ):
        with pytest.raises(DatabaseError, match="append-only"), log.begin() as s:
            s.execute(text(statement))


def test_edited_event_is_named(log: sessionmaker[Session], engine: Engine) -> None:
    tamper(engine, "UPDATE audit_events SET payload = '{\"n\": 99}' WHERE position = 3")
    result = verify(log)
    assert (result.ok, result.broken_at, result.placed) == (False, 3, 3)
    assert "edited" in (result.reason or "")


def test_edited_event_with_its_hash_recomputed_is_caught_by_the_tree(
    log: sessionmaker[Session], engine: Engine
) -> None:
    with log() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.position == 3)).one()
        forged = audit.event_hash(
            event.occurred_at, event.actor, event.action, event.case_number, '{"n": 99}', event.salt
        )
    tamper(engine, f"UPDATE audit_events SET payload = '{{\"n\": 99}}', hash = '{forged}' WHERE position = 3")
    result = verify(log)
    assert not result.ok and result.broken_at is not None and result.broken_at <= 3
    assert "does not match them" in (result.reason or "")


def test_deleted_event_is_named(log: sessionmaker[Session], engine: Engine) -> None:
    tamper(engine, "DELETE FROM audit_events WHERE position = 2")
    result = verify(log)
    assert (result.broken_at, result.reason) == (
        2,
        "the event at position 2 is missing (the next one is at 3)",
    )


def test_reordered_events_are_caught(log: sessionmaker[Session], engine: Engine) -> None:
    tamper(
        engine,
        "UPDATE audit_events SET position = -1 WHERE position = 2",
        "UPDATE audit_events SET position = 2 WHERE position = 3",
        "UPDATE audit_events SET position = 3 WHERE position = -1",
    )
    result = verify(log)
    assert (result.ok, result.broken_at) == (False, 2)
    assert "moved or replaced" in (result.reason or "")


def test_an_event_inserted_in_the_middle_is_caught(log: sessionmaker[Session], engine: Engine) -> None:
    """A copy of event 4 (its hash valid) slipped in at position 4, the rest moved up by one."""
    with log() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.position == 4)).one()
    tamper(
        engine,
        "UPDATE audit_events SET position = position + 100 WHERE position >= 4",
        "UPDATE audit_events SET position = position - 99 WHERE position >= 100",
        "INSERT INTO audit_events (occurred_at, actor, action, case_number, payload, salt, hash, position) "
        "SELECT occurred_at, actor, action, case_number, payload, salt, hash, 4 FROM audit_events "
        f"WHERE seq = {event.seq}",
    )
    result = verify(log)
    assert (result.ok, result.broken_at) == (False, 4)
    assert "moved or replaced" in (result.reason or "")


def test_a_cut_tail_is_caught_by_the_signed_head_and_by_a_kept_one(
    sessions: sessionmaker[Session], engine: Engine, key: Ed25519PrivateKey
) -> None:
    write(sessions, 1, 5)
    tree.sequence(sessions, key)
    with engine.connect() as conn:  # the per-case index as the head of 5 signed it
        index_at_5 = {
            t: [r._asdict() for r in conn.execute(select(t))]
            for t in (AuditCase.__table__, AuditIndexTile.__table__)
        }
    write(sessions, 6, 4)
    tree.sequence(sessions, key)
    with sessions() as s:
        kept = heads.KeptHead.parse(json.dumps(tree.latest_head(s).as_dict()))  # type: ignore[union-attr]
    tamper(engine, "DELETE FROM audit_events WHERE position >= 7", "DELETE FROM audit_heads WHERE size = 9")
    assert verify(sessions, key).ok is False, "the tree's nodes over the cut events remain"
    tamper(engine, "DELETE FROM audit_nodes WHERE (level, idx) IN ((1, 3), (2, 1), (3, 0))")
    result = verify(sessions, key)
    assert not result.ok and "per-case index" in (result.reason or ""), "the index still counts them"
    with engine.begin() as conn:  # rolled back too, by someone who kept it
        for table, rows in index_at_5.items():
            conn.execute(table.delete())
            conn.execute(table.insert(), rows)
    assert verify(sessions, key).ok, "without an anchor a cleanly cut tail still looks consistent"
    result = verify(sessions, key, kept)
    assert (result.ok, result.broken_at) == (False, 7)
    assert "fewer than the kept head of 9" in (result.reason or "")


def test_exports_prove_each_event_offline_and_catch_changes(
    log: sessionmaker[Session], key: Ed25519PrivateKey, engine: Engine
) -> None:
    with log() as s:
        first = tree.head_at(s, 5)
    document = export(log, 1, since=heads.KeptHead(first.size, first.root, first))
    offline = json.loads(json.dumps(document))  # what the recipient reads from the file
    result = heads.check_export(offline, key.public_key(), heads.KeptHead(first.size, first.root, first))
    assert (result.ok, result.events) == (True, 3), result.problems

    edited = json.loads(json.dumps(offline))
    edited["events"][1]["payload"] = '{"n": 5}'
    assert "edited" in " ".join(heads.check_export(edited, key.public_key()).problems)

    dropped = json.loads(json.dumps(offline))
    dropped["events"][1]["leaf_hash"] = dropped["events"][2]["leaf_hash"]
    dropped["events"][1].update({k: dropped["events"][2][k] for k in ("occurred_at", "payload", "position")})
    assert not heads.check_export(dropped, key.public_key()).ok, "a moved event fails its inclusion proof"

    forged = json.loads(json.dumps(offline))
    forged["head"]["size"] = 8
    assert "signature" in " ".join(heads.check_export(forged, key.public_key()).problems)

    # Underneath: the log rewritten from event 2 and re-signed with a stolen key. The export is internally
    # consistent, but not with the head the recipient kept.
    tamper(
        engine,
        "DELETE FROM audit_heads",
        "DELETE FROM audit_nodes",
        "DELETE FROM audit_events WHERE position >= 2",
    )
    write(log, 100, 9)
    with log.begin() as s:
        s.execute(text("UPDATE audit_events SET position = NULL WHERE position IS NOT NULL"))
    tree.sequence(log, key)
    rewritten = json.loads(json.dumps(export(log, 1, since=heads.KeptHead(first.size, first.root))))
    result = heads.check_export(rewritten, key.public_key(), heads.KeptHead(first.size, first.root, first))
    assert not result.ok and "changed since the kept head" in result.problems[-1]


def test_an_exports_positions_are_whole_numbers_listed_once_and_its_events_objects(
    log: sessionmaker[Session], key: Ed25519PrivateKey
) -> None:
    """Issue 41, defects 2 and 3: each failed (passed, or a traceback) before."""
    offline = json.loads(json.dumps(export(log, 1)))
    assert heads.check_export(offline, key.public_key()).ok

    def problems(change: Callable[[dict[str, Any]], None]) -> str:
        changed = json.loads(json.dumps(offline))
        change(changed)
        found = heads.check_export(changed, key.public_key())
        assert not found.ok
        return " ".join(found.problems)

    def position(value: object) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["events"][0].update(position=value)

    assert "not a whole number from 0" in problems(position(-1))
    assert "not a whole number from 0" in problems(position(offline["events"][0]["position"] + 0.7))
    assert "not a whole number from 0" in problems(position(str(offline["events"][0]["position"])))
    assert "listed twice" in problems(lambda d: d["events"].append(d["events"][0]))
    assert "events[1]: not an event" in problems(lambda d: d["events"].insert(1, 5))
    assert "events: not a list" in problems(lambda d: d.update(events={"0": d["events"][0]}))
    with pytest.raises(merkle.ProofError, match="count from 0"):
        merkle.verify_inclusion(-1, 5, b"\0" * 32, [], b"\0" * 32)


def test_an_export_proves_it_holds_every_event_of_its_case_and_no_other(
    log: sessionmaker[Session], key: Ed25519PrivateKey
) -> None:
    """Issue 41: the case's entry in the head's per-case index ties down its events' number and order."""
    offline = json.loads(json.dumps(export(log, 1)))
    assert offline["head"]["cases"] == 3 and offline["index"]["events"] == 3
    whole = heads.check_export(offline, key.public_key())
    assert (whole.ok, whole.complete, whole.events) == (True, True, 3), whole.problems
    other = json.loads(json.dumps(export(log, 2)))

    def problems(change: Callable[[dict[str, Any]], None]) -> list[str]:
        changed = json.loads(json.dumps(offline))
        change(changed)
        found = heads.check_export(changed, key.public_key())
        assert not found.ok and found.complete is False
        return found.problems

    missing = problems(lambda d: d["events"].pop(1))
    assert missing == ["the case has 3 event(s) under the head, the export lists 2: 1 missing"]
    cut = problems(lambda d: d["events"].pop())
    assert cut == ["the case has 3 event(s) under the head, the export lists 2: 1 missing"]
    slipped_in = problems(lambda d: d["events"].append(other["events"][-1]))
    assert any("belongs to another case" in p for p in slipped_in)
    assert slipped_in[-1].endswith("the export lists 4: 1 too many")
    swapped = problems(lambda d: d["events"].insert(0, d["events"].pop(1)))
    assert swapped[0].startswith(f"event {offline['events'][0]['position']}: listed after event ")
    assert "not the case's events in log order" in swapped[-1]
    replaced = problems(lambda d: d["events"].__setitem__(1, other["events"][1]))
    assert "not the case's events in log order" in replaced[-1]

    def entry(**change: Any) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["index"].update(change)

    assert "not the one under the signed head" in problems(entry(events=2))[0]
    assert "not the one under the signed head" in problems(entry(slot=1))[0]
    assert "unreadable" in problems(entry(salt="zz"))[0]
    assert "no index entry" in problems(lambda d: d.pop("index"))[0]


def outsider_check(document: dict[str, Any], public: Any) -> list[str]:
    """A checker written from the README's "How an outsider checks an export" and RFC 9162 §2.1.3.2 alone:
    hashlib, json and the Ed25519 check; nothing of the clerk's. What it finds wrong, [] if nothing."""
    import base64
    import hashlib

    def sha(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def compact(value: object) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

    def root_from(index: int, size: int, leaf: bytes, path: list[str]) -> bytes | None:
        fn, sn, r = index, size - 1, leaf
        for p in (bytes.fromhex(h) for h in path):
            if sn == 0:
                return None
            if fn % 2 == 1 or fn == sn:
                r = sha(b"\x01" + p + r)
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn // 2, sn // 2
            else:
                r = sha(b"\x01" + r + p)
            fn, sn = fn // 2, sn // 2
        return r if sn == 0 else None

    head, found = document["head"], []
    message = "query-clerk audit tree head v2\n{size}\n{root}\n{signed_at}\n{index_root}\n{cases}\n"
    public.verify(base64.b64decode(head["signature"]), message.format(**head).encode())
    last, leaves = -1, []
    for e in document["events"]:
        fields = [e["occurred_at"], e["actor"], e["action"], e["case_number"], e["payload"]]
        leaf = sha(b"\x00" + compact([e["salt"], *fields] if "salt" in e else fields))
        if e["case_number"] != document["case_number"] or e["position"] <= last:
            found.append(f"event {e['position']}: another case's or out of order")
        last = e["position"]
        if root_from(e["position"], head["size"], leaf, e["inclusion_proof"]) != bytes.fromhex(head["root"]):
            found.append(f"event {e['position']}: not in the log")
        leaves.append(leaf)
    index = document["index"]
    entry = sha(b"\x00" + compact(["case", document["case_number"], index["events"], index["chain"]]))
    if root_from(index["slot"], head["cases"], entry, index["inclusion_proof"]) != bytes.fromhex(
        head["index_root"]
    ):
        found.append("the index entry is not under the head")
    chain = bytes.fromhex(index["salt"])
    for leaf in leaves:
        chain = sha(b"\x02" + chain + leaf)
    if (len(leaves), chain.hex()) != (index["events"], index["chain"]):
        found.append("incomplete")
    return found


def test_a_checker_written_from_the_readme_agrees(log: sessionmaker[Session], key: Ed25519PrivateKey) -> None:
    document = json.loads(json.dumps(export(log, 1)))
    assert outsider_check(document, key.public_key()) == []
    for change in (
        lambda d: d["events"].pop(),
        lambda d: d["events"].pop(0),
        lambda d: d["events"].insert(0, d["events"].pop(1)),
    ):
        changed = json.loads(json.dumps(document))
        change(changed)
        assert outsider_check(changed, key.public_key()) != []
        assert heads.check_export(changed, key.public_key()).complete is False


def test_the_index_spread_over_many_tiles_grows_and_proves_every_case(
    sessions: sessionmaker[Session], key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caseindex, "TILE", 2)  # a tile of two nodes: every level spans several
    for first, count in ((1, 5), (6, 9), (15, 4)):
        with sessions.begin() as s:
            for i in range(first, first + count):
                audit.append(
                    s, "test.event", actor="system", case_number=CASE.format(i * 7 % 11), payload={"n": i}
                )
        tree.sequence(sessions, key)
        assert verify(sessions, key).ok
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditIndexTile)) > 5
    for case in {i * 7 % 11 for i in range(1, 19)}:
        found = heads.check_export(json.loads(json.dumps(export(sessions, case))), key.public_key())
        assert (found.ok, found.complete) == (True, True), (case, found.problems)


def test_old_leaves_and_old_heads_still_check(
    sessions: sessionmaker[Session], key: Ed25519PrivateKey, engine: Engine
) -> None:
    """Events written before the salt (log format v1) join the index as they are; an export under a head
    signed before the index (v1) checks as before, its completeness not proven."""
    write(sessions, 1, 2)
    with sessions.begin() as s:  # an event as the release before wrote it: no salt
        at = audit.utcnow()
        body = json.dumps({"n": 0}, sort_keys=True)
        old = audit.event_hash(at, audit.Actor.SYSTEM, "test.old", CASE.format(2), body)
        s.execute(
            AuditEvent.__table__.insert(),
            {
                "occurred_at": at,
                "actor": "system",
                "action": "test.old",
                "case_number": CASE.format(2),
                "payload": body,
                "hash": old,
            },
        )
    tree.sequence(sessions, key)
    document = json.loads(json.dumps(export(sessions, 2)))
    assert [e.get("salt") is None for e in document["events"]] == [False, True]
    assert heads.check_export(document, key.public_key()).complete is True
    assert verify(sessions, key).ok
    v1 = heads.SignedHead.sign(
        key, document["head"]["size"], bytes.fromhex(document["head"]["root"]), audit.utcnow()
    )
    assert "index_root" not in v1.as_dict()
    before = {**document, "head": v1.as_dict()}
    del before["index"]
    found = heads.check_export(before, key.public_key())
    assert (found.ok, found.complete) == (True, None), found.problems


def test_an_index_that_is_not_the_logs_is_caught_by_verify(
    log: sessionmaker[Session], key: Ed25519PrivateKey, engine: Engine
) -> None:
    tamper(engine, "UPDATE audit_cases SET events = events - 1 WHERE slot = 0")
    result = verify(log, key)
    assert not result.ok and "slot 0 is not the log's" in (result.reason or "")
    write(log, 10, 2)
    tree.sequence(log, key)  # a head signed over the index as it was left
    result = verify(log, key)
    assert (result.ok, result.broken_at) == (False, 10)
    assert "the per-case index of the signed head of 11 is not the one its events make" in (
        result.reason or ""
    )


def test_consistency_proofs_between_heads(
    log: sessionmaker[Session], key: Ed25519PrivateKey, engine: Engine
) -> None:
    with log() as s:
        document = tree.consistency_document(s, tree.head_at(s, 5), tree.head_at(s, 9))
        at_5, at_9 = tree.head_at(s, 5), tree.head_at(s, 9)
    assert heads.check_consistency(document, key.public_key()).ok
    # Issue 41, defect 1: the head the recipient kept must be the one the proof starts from.
    assert heads.check_consistency(document, key.public_key(), heads.KeptHead(at_5.size, at_5.root)).ok
    for other in (heads.KeptHead(at_9.size, at_9.root), heads.KeptHead(5, "ab" * 32)):
        found = heads.check_consistency(document, key.public_key(), other)
        assert not found.ok and "not the kept head" in found.problems[-1]
    swapped = {**document, "old": document["new"], "new": document["old"]}
    assert not heads.check_consistency(swapped, key.public_key()).ok
    # The first byte changed whatever it was (a hash that began with 00 was left as it was: 1 run in 256).
    tamper(
        engine,
        "UPDATE audit_events SET hash = CASE WHEN substr(hash, 1, 2) = '00' THEN 'ff' ELSE '00' END"
        " || substr(hash, 3) WHERE position = 1",
    )
    with log() as s:
        broken = {**document, "proof": tree.consistency_proof(s, 5, 9)}
    assert heads.check_consistency(broken, key.public_key()).ok, "the proof reads nodes, not leaf 1"
    assert not verify(log).ok


def test_a_crash_between_commit_and_sequencing_loses_nothing(
    sessions: sessionmaker[Session], key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(sessions, 1, 7)

    real = tree._place
    calls = iter(range(100))

    def crash_in_second_batch(session: Session, batch: int) -> int:
        placed = real(session, batch)
        if next(calls) == 1:
            raise RuntimeError("killed")  # this batch's transaction rolls back
        return placed

    monkeypatch.setattr(tree, "_place", crash_in_second_batch)
    with pytest.raises(RuntimeError):
        tree.sequence(sessions, key, batch=3)
    monkeypatch.setattr(tree, "_place", real)
    result = verify(sessions, key)
    assert (result.events, result.placed, result.heads) == (7, 3, 0)
    write(sessions, 8, 2)
    done = tree.sequence(sessions, key, batch=3)
    assert (done.placed, done.size, done.head and done.head.size) == (6, 9, 9)
    assert verify(sessions, key).ok
    with sessions() as s:
        assert s.scalar(select(func.count(func.distinct(AuditEvent.position)))) == 9


@pytest.mark.postgres
def test_writers_take_no_shared_lock_to_audit(
    database_url: str, sessions: sessionmaker[Session], key: Ed25519PrivateKey
) -> None:
    """Two transactions audit at once and the second commits while the first is still open: no lock is
    held from an append to its commit (the old chain's advisory lock made the second wait here)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time by design")
    holder = sessions()
    holder.begin()
    audit.append(holder, "test.first", actor="a")
    done = threading.Event()

    def second() -> None:
        write(sessions, 1, 1)
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert done.wait(10), "the second writer waited for the first one's commit"
    thread.join()
    tree.sequence(sessions, key)  # the open transaction's event is not visible yet: not placed
    holder.commit()
    holder.close()
    done_later = tree.sequence(sessions, key)
    assert (done_later.placed, done_later.size) == (1, 2)
    assert verify(sessions, key).ok


def test_export_escapes_formulas_in_csv(log: sessionmaker[Session]) -> None:
    with log.begin() as s:
        audit.append(s, "test.event", actor='=HYPERLINK("http://x")', case_number=CASE.format(1))
    with log() as s:
        buffer = io.StringIO()
        count = audit.export(audit.case_events(s, CASE.format(1)), buffer, "csv")
    assert count == 4
    assert "'=HYPERLINK" in buffer.getvalue()


def test_a_key_file_is_made_once_private_and_refused_when_garbage(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.key"
    made = heads.load_private_key(None, path, create=True)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = heads.load_private_key(None, path, create=True)
    assert heads.key_id(made.public_key()) == heads.key_id(again.public_key())
    public = heads.load_public_key(heads.public_pem(made.public_key()))
    assert heads.key_id(public) == heads.key_id(made.public_key())
    path.write_text("not a key")
    with pytest.raises(heads.HeadError, match="CLERK_AUDIT_KEY_FILE"):
        heads.load_private_key(None, path, create=True)
    with pytest.raises(heads.HeadError, match="--public-key"):
        heads.load_public_key("bm90IGEga2V5")
    with pytest.raises(heads.HeadError, match="SIZE:ROOT"):
        heads.KeptHead.parse("yesterday's head")


def _chain_rows(count: int) -> list[dict]:
    """Events as revisions 0001-0004 wrote them: a hash chain."""
    import datetime as dt
    import hashlib

    rows, prev = [], "0" * 64
    for seq in range(1, count + 1):
        when = dt.datetime(2026, 12, 1, 8, 0, seq)
        payload = json.dumps({"n": seq}, sort_keys=True)
        body = [
            prev,
            seq,
            when.replace(tzinfo=dt.UTC).isoformat(timespec="microseconds"),
            "system",
            "old.event",
            CASE.format(1),
            payload,
        ]
        digest = hashlib.sha256(
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        ).hexdigest()
        rows.append(
            {
                "seq": seq,
                "occurred_at": when,
                "actor": "system",
                "action": "old.event",
                "case_number": CASE.format(1),
                "payload": payload,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    return rows


def test_the_old_chain_becomes_the_first_leaves(database_url: str, key: Ed25519PrivateKey) -> None:
    from alembic import command
    from sqlalchemy import column, insert, table

    from clerk.store import db

    engine = db.make_engine(database_url)
    command.upgrade(db.alembic_config(engine), "0004")
    old = table("audit_events", *(column(c) for c in _chain_rows(1)[0]))
    with engine.begin() as conn:
        conn.execute(insert(old), _chain_rows(6))
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    with sessions() as s:
        placed = s.execute(select(AuditEvent.seq, AuditEvent.position).order_by(AuditEvent.seq)).all()
        migrated = s.scalars(select(AuditEvent).where(AuditEvent.action == "audit.chain_migrated")).one()
    assert [tuple(r) for r in placed[:6]] == [(i, i - 1) for i in range(1, 7)]
    assert migrated.position is None and json.loads(migrated.payload)["events"] == 6
    assert json.loads(migrated.payload)["chain_head"] == _chain_rows(6)[-1]["hash"]
    assert tree.sequence(sessions, key).size == 7
    write(sessions, 1, 2)  # new events after the old ones, numbered on
    assert tree.sequence(sessions, key).size == 9
    assert verify(sessions, key).ok
    engine.dispose()


def test_a_broken_chain_is_not_migrated(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import column, insert, table

    from clerk.store import db

    engine = db.make_engine(database_url)
    command.upgrade(db.alembic_config(engine), "0004")
    rows = _chain_rows(4)
    rows[2]["payload"] = '{"n": 99}'
    with engine.begin() as conn:
        conn.execute(insert(table("audit_events", *(column(c) for c in rows[0]))), rows)
    with pytest.raises(RuntimeError, match="broken at event 3: nothing was migrated"):
        db.upgrade(engine)
    assert db.current_revision(engine) == "0004"
    engine.dispose()
