"""The audit trail (全程留痕): an append-only, hash-chained log of every step that matters.

Each event's hash covers its own fields and the previous event's hash, so editing, deleting or reordering
any event breaks the chain from that point on; `verify` walks the chain and names the first broken event.
The table's triggers refuse UPDATE and DELETE (clerk/migrations/append_only.py); the chain catches what
gets past them (a superuser, or someone editing the SQLite file). Deleting events from the *end* leaves a
shorter chain that is still consistent: record the head that `verify` prints somewhere else (a daily report,
a ticket) and check it later with `verify --expect-head`.

Payloads are stored as canonical JSON with personal data masked: callers pass masked values, and every
string is scrubbed once more of anything that looks like an ID or an account number.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from clerk.store import db
from models.tables import AuditEvent, utcnow
from models.values import scrub_personal_data

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x61756469  # "audi": serialises appends on PostgreSQL


class Actor:
    SYSTEM = "system"

    @staticmethod
    def user(name: str) -> str:
        return f"user:{name}"

    @staticmethod
    def flow_run(run_id: str) -> str:
        return f"flow-run:{run_id}"


def _canonical_payload(payload: Mapping[str, Any]) -> str:
    return json.dumps(scrub_personal_data(dict(payload)), ensure_ascii=False, sort_keys=True, default=str)


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def event_hash(
    prev_hash: str,
    seq: int,
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    case_number: str | None,
    payload: str,
) -> str:
    body = json.dumps(
        [prev_hash, seq, _timestamp(occurred_at), actor, action, case_number, payload],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One event to append: what happened, to which case, with what (masked) details."""

    action: str
    actor: str
    case_number: str | None = None
    payload: Mapping[str, Any] | None = None


def append(
    session: Session,
    action: str,
    *,
    actor: str,
    case_number: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Append one event inside the caller's transaction: it commits or rolls back with the change it
    records."""
    append_many(session, [Entry(action, actor, case_number, payload)])


def append_many(session: Session, entries: Iterable[Entry]) -> None:
    """Append events in order, reading the chain's head once and inserting them in one bulk INSERT.

    Rows, not ORM objects: nothing reads an event back in the transaction that appends it, and a sweep
    appends one per hit and per measure (the ORM's objects and flush were 72 % of the append's time;
    bench/README.md)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        seq += 1
        when = utcnow()
        body = _canonical_payload(entry.payload or {})
        digest = event_hash(prev, seq, when, entry.actor, entry.action, entry.case_number, body)
        rows.append(
            {
                "seq": seq,
                "occurred_at": when,
                "actor": entry.actor,
                "action": entry.action,
                "case_number": entry.case_number,
                "payload": body,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    if rows:
        session.execute(insert(db.table(AuditEvent)), rows)


@dataclass(frozen=True, slots=True)
class Verification:
    events: int
    head: str
    broken_at: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(session: Session, expect_head: str | None = None) -> Verification:
    """Walk the whole chain in order; stop at the first event that does not hold."""
    expected_seq, prev, count = 1, GENESIS, 0
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000))
    for event in rows.scalars():
        if event.seq != expected_seq:
            reason = f"event {expected_seq} is missing (the next one stored is {event.seq})"
            return Verification(count, prev, expected_seq, reason)
        if event.prev_hash != prev:
            return Verification(count, prev, event.seq, "it does not link to the event before it")
        recomputed = event_hash(
            prev, event.seq, event.occurred_at, event.actor, event.action, event.case_number, event.payload
        )
        if recomputed != event.hash:
            return Verification(count, prev, event.seq, "its content does not match its hash (edited)")
        prev, expected_seq, count = event.hash, expected_seq + 1, count + 1
    if expect_head is not None and expect_head != prev:
        return Verification(count, prev, count + 1, "the chain's head is not the one expected (truncated?)")
    return Verification(count, prev)


def case_events(session: Session, case_number: str) -> Iterator[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.case_number == case_number).order_by(AuditEvent.seq)
    yield from session.execute(stmt.execution_options(yield_per=1000)).scalars()


EXPORT_FIELDS = ("seq", "occurred_at", "actor", "action", "case_number", "payload", "prev_hash", "hash")


def _as_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": _timestamp(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "case_number": event.case_number,
        "payload": json.loads(event.payload),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet will show as text, not run as a formula (OWASP CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export(events: Iterable[AuditEvent], out: TextIO, fmt: str) -> int:
    """Write events as JSON lines or CSV; returns how many were written."""
    count = 0
    if fmt == "jsonl":
        for event in events:
            out.write(json.dumps(_as_row(event), ensure_ascii=False) + "\n")
            count += 1
        return count
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}: use jsonl or csv")
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for event in events:
        row = _as_row(event)
        row["payload"] = json.dumps(row["payload"], ensure_ascii=False, sort_keys=True)
        writer.writerow({k: spreadsheet_safe(str(v)) if v is not None else "" for k, v in row.items()})
        count += 1
    return count
