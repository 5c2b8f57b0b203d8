"""The audit trail (全程留痕): an append-only log of every step that matters, verifiable by outsiders.

An event is written in the transaction that makes the change it records, with its own leaf hash (RFC 9162:
SHA-256 of 0x00 and `leaf_entry`) and no place in the log yet. Appending takes no lock: writers on
PostgreSQL never wait for each other to audit. The sequencer (clerk.store.tree) later gives committed
events their positions in batches, extends the Merkle tree over them and signs a tree head
(clerk.store.heads); `clerk audit verify` checks the whole log against the signed heads, and a case's
export carries a proof of each event's place that a third party checks offline.

The table's triggers refuse UPDATE and DELETE, except the sequencer setting an event's position once
(clerk/store/migrations/append_only.py); the tree and the signed heads catch what gets past them.

Payloads are stored as canonical JSON with personal data masked: callers pass masked values, and every
string is scrubbed once more of anything that looks like an ID or an account number.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.store import bulk, db
from models import merkle
from models.tables import AuditEvent, utcnow
from models.values import scrub_personal_data


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


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def leaf_entry(
    occurred_at: str, actor: str, action: str, case_number: str | None, payload: str, salt: str | None = None
) -> bytes:
    """The bytes an event's leaf hashes: the JSON array [salt, occurred_at (ISO 8601, UTC, microseconds),
    actor, action, case number or null, payload (the canonical JSON text)], UTF-8, no spaces. The salt (32
    hex digits, secret) makes the leaf hash unguessable to whoever holds it in another case's proof; events
    written before it (log format v1) have none and the array starts at occurred_at. An outsider rebuilds
    it from an export's fields."""
    body = [occurred_at, actor, action, case_number, payload]
    if salt is not None:
        body.insert(0, salt)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_hash(
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    case_number: str | None,
    payload: str,
    salt: str | None = None,
) -> str:
    entry = leaf_entry(timestamp(occurred_at), actor, action, case_number, payload, salt)
    return merkle.leaf_hash(entry).hex()


def intact(event: AuditEvent) -> bool:
    """Whether a stored event's content still matches the leaf hash it was written with."""
    return (
        event_hash(event.occurred_at, event.actor, event.action, event.case_number, event.payload, event.salt)
        == event.hash
    )


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
    """Append events in one bulk INSERT, each hashed on its own: no head to read, no lock to take.

    Rows, not ORM objects: nothing reads an event back in the transaction that appends it, and a sweep
    appends one per hit and per measure (the ORM's objects and flush were 72 % of the append's time;
    bench/README.md)."""
    when = utcnow()  # the events of one append happen together: one time, formatted once
    at = timestamp(when)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        body = _canonical_payload(entry.payload or {})
        salt = secrets.token_hex(16)
        leaf = leaf_entry(at, entry.actor, entry.action, entry.case_number, body, salt)
        rows.append(
            {
                "salt": salt,
                "occurred_at": when,
                "actor": entry.actor,
                "action": entry.action,
                "case_number": entry.case_number,
                "payload": body,
                "hash": merkle.leaf_hash(leaf).hex(),
            }
        )
    bulk.insert_rows(session, db.table(AuditEvent), rows)


def case_events(session: Session, case_number: str) -> Iterator[AuditEvent]:
    """A case's events in the order they were written (events not yet placed in the log included)."""
    stmt = select(AuditEvent).where(AuditEvent.case_number == case_number).order_by(AuditEvent.seq)
    yield from session.execute(stmt.execution_options(yield_per=1000)).scalars()


EXPORT_FIELDS = ("seq", "position", "occurred_at", "actor", "action", "case_number", "payload", "hash")


def _as_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "position": event.position,
        "occurred_at": timestamp(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "case_number": event.case_number,
        "payload": json.loads(event.payload),
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
