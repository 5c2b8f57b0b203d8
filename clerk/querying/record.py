"""Use cases of querying: which debtors are due, what to ask, and recording what registries answered.

Each hit is recorded once: an asset is one row per (registry, identifier); a later reply updates its
balance and other authorities' measures and says what changed, in the audit trail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clerk.querying import assets
from clerk.store import audit, bulk, db
from connectors.base import QueryReply, SubjectStatus
from models.status import LookupStatus
from models.tables import Asset, Case, CaseDebtor, Debtor, Query, utcnow
from models.tallies import add_fields
from models.values import scrub_text

_QUERIES, _ASSETS = db.table(Query), db.table(Asset)


def record_sent(
    session: Session, *, run_id: int, registry_id: int, debtor_ids: Sequence[int], ref: str | None
) -> dict[int, int]:
    """Write a batch's lookups down (status `sent`) before the request leaves, where a crash must leave a
    trace of it (`querying.query_page` says when): one bulk insert of those the run has not written yet.
    Returns debtor id -> query id, for recording the answer (`record_reply(queries=…)`) without reading
    them back."""
    return record_sent_many(session, run_id, [(registry_id, ref, debtor_ids)])[0]


#: A request to write down: (registry id, request reference, the debtors asked).
Sent = tuple[int, str | None, Sequence[int]]


def record_sent_many(session: Session, run_id: int, requests: Sequence[Sent]) -> list[dict[int, int]]:
    """`record_sent` for many requests of a run (a sweep's page at every registry): one read of what was
    written before, one insert of the rest (`bulk.insert_columns`, which tells their ids). Each
    request's debtor id -> query id, in order."""
    debtors = sorted({d for _, _, debtor_ids in requests for d in debtor_ids})
    registries = sorted({registry_id for registry_id, _, _ in requests})
    found = _query_ids(session, run_id, registries, debtors)
    new = [
        Lookup(registry_id, d, ref, LookupStatus.SENT)
        for registry_id, ref, debtor_ids in requests
        for d in debtor_ids
        if (registry_id, d) not in found
    ]
    now = utcnow()
    found.update(_insert_lookups(session, run_id, new, now, now))
    return [{d: found[(registry_id, d)] for d in debtor_ids} for registry_id, _, debtor_ids in requests]


def _query_ids(
    session: Session, run_id: int, registry_ids: Sequence[int], debtor_ids: Sequence[int]
) -> dict[tuple[int, int], int]:
    """(registry id, debtor id) -> query id of the run's lookups of these debtors at these registries. All
    three columns of the lookups' unique key are named, so that the read probes it: with the run alone,
    SQLite walked every lookup of the run for each chunk, and a 1,000,000-debtor sweep slowed as it went."""
    found: dict[tuple[int, int], int] = {}
    for chunk in db.chunks(debtor_ids):
        rows = session.execute(
            select(_QUERIES.c.registry_id, _QUERIES.c.debtor_id, _QUERIES.c.id).where(
                _QUERIES.c.run_id == run_id,
                db.among(session, _QUERIES.c.registry_id, registry_ids),
                db.among(session, _QUERIES.c.debtor_id, chunk),
            )
        )
        found.update(((registry_id, debtor_id), query_id) for registry_id, debtor_id, query_id in rows)
    return found


@dataclass(frozen=True, slots=True)
class Lookup:
    """How one debtor's lookup at one registry ended, to write (`write_lookups`)."""

    registry_id: int
    debtor_id: int
    ref: str | None  # the request's reference
    status: LookupStatus  # answered, pending (answered "later") or failed
    error: str | None = None  # why it failed (no personal data)


def write_lookups(
    session: Session,
    run_id: int,
    lookups: Sequence[Lookup],
    sent_at: dt.datetime,
    written: Mapping[tuple[int, int], int] | None = None,
    now: dt.datetime | None = None,
) -> dict[tuple[int, int], int]:
    """Write how lookups of a run ended, in the caller's transaction: each once. Those the run wrote before
    (`sent` ahead of their request, or answered "later" and collected now) are updated, found in `written`
    ((registry id, debtor id) -> query id) or else read by their key; the rest are inserted, in one
    statement, sent at `sent_at`. Those answered are answered `now` (else now). (registry id, debtor id)
    -> query id of every lookup, for the assets they found (`Asset.first_query_id`)."""
    now = now or utcnow()
    ids = dict(written or {})
    missing = [(x.registry_id, x.debtor_id) for x in lookups if (x.registry_id, x.debtor_id) not in ids]
    if missing:
        registries, debtors = (sorted(set(column)) for column in zip(*missing, strict=True))
        ids.update(_query_ids(session, run_id, registries, debtors))
    changes: dict[tuple[LookupStatus, str | None, str | None], list[int]] = {}
    new = []
    for x in lookups:
        query_id = ids.get((x.registry_id, x.debtor_id))
        if query_id is None:
            new.append(x)
        else:
            changes.setdefault((x.status, x.ref, x.error), []).append(query_id)
    for (status, ref, error), query_ids in changes.items():
        answered_at = now if status is LookupStatus.ANSWERED else None
        values = {
            "status": status.value,
            "registry_reference": ref,
            "answered_at": answered_at,
            "error": error,
        }
        bulk.set_values(session, _QUERIES, values, query_ids)
    ids.update(_insert_lookups(session, run_id, new, sent_at, now))
    return ids


def _insert_lookups(
    session: Session, run_id: int, new: Sequence[Lookup], sent_at: dt.datetime, now: dt.datetime
) -> dict[tuple[int, int], int]:
    """Insert lookups the run has not written (`sent` ahead, or as they ended), in one statement
    (`bulk.insert_columns`, which tells their ids): (registry id, debtor id) -> query id."""
    if not new:
        return {}
    columns: dict[str, list[Any]] = {
        "registry_id": [x.registry_id for x in new],
        "debtor_id": [x.debtor_id for x in new],
        "registry_reference": [x.ref for x in new],
        "status": [x.status.value for x in new],
        "error": [x.error for x in new],
        "answered_at": [now if x.status is LookupStatus.ANSWERED else None for x in new],
        "run_id": [run_id] * len(new),
        "sent_at": [sent_at] * len(new),
    }
    inserted = bulk.insert_columns(session, _QUERIES, columns)
    return dict(zip(((x.registry_id, x.debtor_id) for x in new), inserted, strict=True))


@dataclass
class Recorded:
    """What one reply changed, in counts (never personal data)."""

    queried: int = 0
    hits: int = 0
    new_assets: int = 0
    changed: int = 0
    pending: int = 0
    none: int = 0
    cases_with_new_hits: set[int] = field(default_factory=set)
    terminated_with_new_hits: set[int] = field(default_factory=set)  # to resume (执恢)
    terminated_queried: set[int] = field(default_factory=set)  # their applicants are told
    answered: set[int] = field(default_factory=set)  # debtors answered, to stamp (`stamp_queried`)

    def add(self, other: Recorded) -> None:
        add_fields(self, other)


@dataclass(frozen=True)
class Reply:
    """A registry's reply to record (`record_replies`), with the lookups `record_sent` wrote ahead of its
    request (debtor id -> query id; None: none written ahead, or not known here: read by their key)."""

    registry_id: int
    registry_code: str
    reply: QueryReply
    queries: Mapping[int, int] | None = None


def record_reply(
    session: Session,
    *,
    run_id: int,
    registry_id: int,
    registry_code: str,
    reply: QueryReply,
    actor: str,
    stamp: bool = True,
    queries: Mapping[int, int] | None = None,
    cases: Mapping[str, Mapping[int, Mapping[int, str]]] | None = None,
    sent_at: dt.datetime | None = None,
) -> Recorded:
    """`record_replies` of one reply."""
    [result] = record_replies(
        session,
        run_id,
        [Reply(registry_id, registry_code, reply, queries)],
        actor,
        stamp=stamp,
        cases=cases,
        sent_at=sent_at,
    )
    return result


def record_replies(
    session: Session,
    run_id: int,
    replies: Sequence[Reply],
    actor: str,
    *,
    stamp: bool = True,
    cases: Mapping[str, Mapping[int, Mapping[int, str]]] | None = None,
    sent_at: dt.datetime | None = None,
) -> list[Recorded]:
    """Record the lookups and hits of replies in the caller's transaction, what each changed in order;
    safe to call again with the same replies (a retried batch, a collected answer): nothing is recorded
    twice. Each lookup is written once, with its answer (`write_lookups`: those written ahead are
    updated); new ones as sent at `sent_at` (when the requests left; else now). The debtors answered are
    stamped queried now, unless `stamp` is False: the sweep stamps a page's debtors once, after every
    registry's reply to it is recorded (`stamp_queried`). `cases`: the debtors' cases as `cases_of` reads
    them; else they are read.

    Everything is read once and written once for all the replies (a sweep's page: 25 replies, 5,000
    lookups), as rows, no ORM object made (`Recording`)."""
    written = {
        (r.registry_id, debtor_id): query_id
        for r in replies
        for debtor_id, query_id in (r.queries or {}).items()
    }
    lookups = [
        Lookup(r.registry_id, int(s.subject_ref), r.reply.request_ref, _ENDED[s.status])
        for r in replies
        for s in r.reply.results
    ]
    now = utcnow()  # the lookups answered, the assets seen and the debtors stamped: one instant
    ids = write_lookups(session, run_id, lookups, sent_at or now, written, now)
    if cases is None:
        cases = cases_of(session, sorted({int(s.subject_ref) for r in replies for s in r.reply.results}))
    recording = Recording(actor, cases, _known(session, replies), now)
    results = [recording.add(r, ids) for r in replies]
    recording.write(session, stamp)
    return results


#: How a subject's answer leaves its lookup.
_ENDED = {
    SubjectStatus.PENDING: LookupStatus.PENDING,
    SubjectStatus.FOUND: LookupStatus.ANSWERED,
    SubjectStatus.NONE: LookupStatus.ANSWERED,
}


def _known(session: Session, replies: Sequence[Reply]) -> dict[tuple[int, str], dict[str, Any]]:
    """(registry id, identifier) -> the row of each asset the replies name that the case book knows: one
    read per registry."""
    wanted: dict[int, list[str]] = {}
    for r in replies:
        wanted.setdefault(r.registry_id, []).extend(a.identifier for s in r.reply.results for a in s.assets)
    known: dict[tuple[int, str], dict[str, Any]] = {}
    for registry_id, identifiers in wanted.items():
        for part in db.chunks(identifiers):
            rows = db.all_rows(session, assets.known_of(session, registry_id, part))
            known.update(((registry_id, row.identifier), row._asdict()) for row in rows)
    return known


@dataclass
class Recording:
    """Replies being recorded together (`record_replies`, their lookups written): each is read in turn
    (`add`), what they change is gathered, and it is written at the end (`write`), each kind of row in one
    bulk statement (`bulk.insert_rows`, `bulk.update_rows`): the new assets, the known assets' new reports,
    the audit events. Replies of one registry name different debtors' assets: what one reply adds, another
    of the same page does not read."""

    actor: str
    cases: Mapping[str, Mapping[int, Mapping[int, str]]]  # as `cases_of` reads them
    known: dict[tuple[int, str], dict[str, Any]]  # (registry id, identifier) -> the asset's row
    now: dt.datetime = field(default_factory=utcnow)
    new_assets: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)  # named twice: once
    events: list[audit.Entry] = field(default_factory=list)
    debtors: set[int] = field(default_factory=set)  # answered, to stamp
    rewritten: set[int] = field(default_factory=set)  # known assets whose report changed (not only seen)

    def add(self, r: Reply, lookups: Mapping[tuple[int, int], int]) -> Recorded:
        """Read one reply (the lookups written: (registry id, debtor id) -> query id); what it changed, in
        counts."""
        result = Recorded()
        active_of, terminated_of = self.cases.get("active", {}), self.cases.get("terminated", {})
        for subject in r.reply.results:
            debtor_id = int(subject.subject_ref)
            result.queried += 1
            if subject.status is SubjectStatus.PENDING:
                result.pending += 1
                continue
            result.answered.add(debtor_id)
            terminated = terminated_of.get(debtor_id)
            if terminated:
                result.terminated_queried.update(terminated)
            if subject.status is SubjectStatus.NONE:
                result.none += 1
            for report in subject.assets:
                result.hits += 1
                key = (r.registry_id, report.identifier)
                asset = self.known.get(key)
                if asset is None:
                    asset = self.known[key] = self.new_assets[key] = assets.new_asset(
                        debtor_id, r.registry_id, lookups[(r.registry_id, debtor_id)], report, self.now
                    )
                    result.new_assets += 1
                    action = "hit.recorded"
                else:
                    changed, rewritten = assets.refresh(asset, report, self.now)
                    if rewritten:
                        self.rewritten.add(asset["id"])
                    if not changed:
                        continue
                    result.changed += 1
                    action = "hit.changed"
                active = active_of.get(debtor_id, {})
                result.cases_with_new_hits.update(active)
                if terminated:
                    result.terminated_with_new_hits.update(terminated)
                payload = assets.hit_payload(r.registry_code, asset)
                numbers = [*active.values(), *(terminated or {}).values()]
                self.events.extend(audit.Entry(action, self.actor, number, payload) for number in numbers)
        self.debtors |= result.answered
        return result

    def write(self, session: Session, stamp: bool) -> None:
        """Write what the replies changed, in the caller's transaction; with `stamp`, the debtors answered
        are stamped queried."""
        if stamp:
            stamp_queried(session, self.debtors, self.now)
        # Two clerks inserting the same new asset: the second waits for the first's commit, then fails on
        # the unique key and the replies are recorded again (querying.query_page). (Appending to the audit
        # trail takes no lock since the log became a Merkle tree placed by its sequencer.)
        bulk.insert_rows(session, _ASSETS, list(self.new_assets.values()))
        # Every known asset was seen now; most were seen as they were, and only the time changes: one
        # statement for those, and a row each for the others.
        seen = [a["id"] for a in self.known.values() if "id" in a]
        if seen:
            rewritten = [a for a in self.known.values() if a.get("id") in self.rewritten]
            rows = [{"id": a["id"]} | {k: a[k] for k in assets.REPORTED} for a in rewritten]
            bulk.update_rows(session, _ASSETS, rows)
            bulk.set_values(session, _ASSETS, {"last_seen_at": self.now}, sorted(set(seen) - self.rewritten))
            db.expire_cached(session, Asset, seen)
        audit.append_many(session, self.events)


def stamp_queried(session: Session, debtor_ids: Iterable[int], now: dt.datetime) -> None:
    """The debtors were answered now: not due again until the re-query interval has passed (querying.due).

    Replies recorded at once (a case query's, a collected answer, a sweep page's) may stamp the same
    debtors: they are locked in id order, whatever order the UPDATE's plan would read them in (by the key's
    index, or by place in the table; after many updates the two differ), so two stamps at once wait for each
    other instead of deadlocking (tests/usecases/test_lock_order.py)."""
    for chunk in db.chunks(sorted(debtor_ids)):
        if session.get_bind().dialect.name == "postgresql":  # SQLite's writers take turns (db.py)
            session.execute(
                select(Debtor.id)
                .where(db.among(session, Debtor.id, chunk))
                .order_by(Debtor.id)
                .with_for_update(key_share=True)
            )
        session.execute(update(Debtor).where(db.among(session, Debtor.id, chunk)).values(last_queried_at=now))


def record_failure(
    session: Session,
    *,
    run_id: int,
    registry_id: int,
    debtor_ids: Sequence[int],
    reason: str,
    sent_at: dt.datetime | None = None,
) -> None:
    """A batch the registry did not answer: its lookups are written as failed (`write_lookups`; the reason
    has no personal data), and the debtors stay due for the next run."""
    error = scrub_text(reason)[:500]
    failed = [Lookup(registry_id, d, None, LookupStatus.FAILED, error) for d in debtor_ids]
    write_lookups(session, run_id, failed, sent_at or utcnow())


def pending_requests(session: Session) -> list[tuple[int, int, str]]:
    """(run id, registry id, request reference) of queries whose answers are still to be collected."""
    rows = session.execute(
        select(Query.run_id, Query.registry_id, Query.registry_reference)
        .where(Query.status == LookupStatus.PENDING, Query.registry_reference.is_not(None))
        .distinct()
    )
    return [(run, registry, ref) for run, registry, ref in rows if ref]


def cases_of(session: Session, debtor_ids: Sequence[int]) -> dict[str, dict[int, dict[int, str]]]:
    """status -> debtor id -> {case id: case number}: the debtors' cases, by status.

    The status is filtered here, not in SQL: with `cases.status = ?` in the query, SQLite walked every case
    of that status to find a batch's few (bench/README.md has the figures); by the debtors' index it reads
    only their links."""
    rows = db.all_rows(
        session,
        select(CaseDebtor.debtor_id, Case.id, Case.case_number, Case.status)
        .join(Case, Case.id == CaseDebtor.case_id)
        .where(db.among(session, CaseDebtor.debtor_id, debtor_ids)),
    )
    found: dict[str, dict[int, dict[int, str]]] = {}
    for debtor_id, case_id, number, status in rows:
        found.setdefault(status, {}).setdefault(debtor_id, {})[case_id] = number
    return found
