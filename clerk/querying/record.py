"""Use cases of querying: which debtors are due, what to ask, and recording what registries answered.

Each hit is recorded once: an asset is one row per (registry, identifier); a later reply updates its
balance and other authorities' measures and says what changed, in the audit trail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from clerk.store import audit, db
from connectors.base import AssetReport, QueryReply, SubjectStatus
from models.status import LookupStatus
from models.tables import Asset, Case, CaseDebtor, Debtor, Query, utcnow
from models.values import mask_account, scrub_text


def record_sent(
    session: Session, *, run_id: int, registry_id: int, debtor_ids: Sequence[int], ref: str | None
) -> None:
    """Write a batch's lookups down (status `sent`) before the request leaves: one bulk insert."""
    existing = _run_queries(session, run_id, registry_id, debtor_ids)
    _insert_sent(session, run_id, registry_id, [d for d in debtor_ids if d not in existing], ref)


def _insert_sent(
    session: Session, run_id: int, registry_id: int, debtor_ids: Sequence[int], ref: str | None
) -> None:
    now = utcnow()
    rows = [
        {
            "run_id": run_id,
            "registry_id": registry_id,
            "debtor_id": d,
            "registry_reference": ref,
            "sent_at": now,
        }
        for d in debtor_ids
    ]
    if rows:
        session.execute(insert(db.table(Query)), rows)


def add_counts(total: object, other: object) -> None:
    """Add every integer field of the dataclass `other` to the same field of `total`."""
    for f in dataclasses.fields(other):  # type: ignore[arg-type]
        if f.type in ("int", int):
            setattr(total, f.name, getattr(total, f.name) + getattr(other, f.name))


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
        add_counts(self, other)
        self.answered |= other.answered
        self.cases_with_new_hits |= other.cases_with_new_hits
        self.terminated_with_new_hits |= other.terminated_with_new_hits
        self.terminated_queried |= other.terminated_queried


def record_reply(
    session: Session,
    *,
    run_id: int,
    registry_id: int,
    registry_code: str,
    reply: QueryReply,
    actor: str,
    stamp: bool = True,
) -> Recorded:
    """Record the queries and hits of one reply in the caller's transaction; safe to call again with the
    same reply (a retried batch, a collected answer): nothing is recorded twice. The debtors answered are
    stamped queried now, unless `stamp` is False: the sweep stamps a page's debtors once, after every
    registry's reply to it is recorded (`stamp_queried`), so that the five replies' transactions do not
    each lock the same debtors' rows.

    Everything is written in bulk, as rows (a reply answers hundreds of debtors, most with nothing): the
    lookups, the new assets, the audit events; only assets already known are ORM objects, updated in place."""
    result = Recorded()
    now = utcnow()
    debtor_ids = [int(r.subject_ref) for r in reply.results]
    queries = _ensure_queries(session, run_id, registry_id, debtor_ids, reply.request_ref)
    identifiers = [a.identifier for r in reply.results for a in r.assets]
    known = (
        {
            a.identifier: a
            for a in session.scalars(
                select(Asset).where(Asset.registry_id == registry_id, Asset.identifier.in_(identifiers))
            )
        }
        if identifiers
        else {}
    )
    by_status = cases_of(session, debtor_ids)
    active_of, terminated_of = by_status.get("active", {}), by_status.get("terminated", {})
    events: list[audit.Entry] = []
    new_assets: list[Asset] = []
    pending: list[int] = []
    answered: list[int] = []
    for subject in reply.results:
        debtor_id = int(subject.subject_ref)
        result.queried += 1
        if subject.status is SubjectStatus.PENDING:
            pending.append(queries[debtor_id])
            result.pending += 1
            continue
        answered.append(debtor_id)
        result.terminated_queried |= set(terminated_of.get(debtor_id, {}))
        if subject.status is SubjectStatus.NONE:
            result.none += 1
        for report in subject.assets:
            result.hits += 1
            asset = known.get(report.identifier)
            if asset is None:
                asset = _new_asset(debtor_id, registry_id, queries[debtor_id], report, now)
                known[report.identifier] = asset
                new_assets.append(asset)
                result.new_assets += 1
                action = "hit.recorded"
            elif update_asset(asset, report, now):
                result.changed += 1
                action = "hit.changed"
            else:
                continue
            cases = active_of.get(debtor_id, {})
            result.cases_with_new_hits |= set(cases)
            result.terminated_with_new_hits |= set(terminated_of.get(debtor_id, {}))
            payload = _hit_payload(registry_code, asset)
            numbers = [*cases.values(), *terminated_of.get(debtor_id, {}).values()]
            events.extend(audit.Entry(action, actor, number, payload) for number in numbers)
    for chunk in db.chunks(pending):
        session.execute(
            update(Query)
            .where(Query.id.in_(chunk))
            .values(status="pending", registry_reference=reply.request_ref)
        )
    for chunk in db.chunks(sorted(answered)):
        session.execute(
            update(Query)
            .where(Query.id.in_([queries[d] for d in chunk]))
            .values(status="answered", answered_at=now, registry_reference=reply.request_ref)
        )
    result.answered = set(answered)
    if stamp:
        stamp_queried(session, answered, now)
    # Two clerks inserting the same new asset: the second waits for the first's commit, then fails on the
    # unique key and the reply is recorded again (querying.query_batch). (Appending to the audit trail takes
    # no lock since the log became a Merkle tree placed by its sequencer: nothing else is held here.)
    if new_assets:
        session.execute(
            insert(db.table(Asset)), [{c: getattr(a, c) for c in _NEW_ASSET_COLUMNS} for a in new_assets]
        )
    session.flush()  # the known assets' changes
    audit.append_many(session, events)
    return result


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
                .where(Debtor.id.in_(chunk))
                .order_by(Debtor.id)
                .with_for_update(key_share=True)
            )
        session.execute(update(Debtor).where(Debtor.id.in_(chunk)).values(last_queried_at=now))


def record_failure(
    session: Session, *, run_id: int, registry_id: int, debtor_ids: Sequence[int], reason: str
) -> None:
    """A batch the registry did not answer: its queries are recorded as failed (the reason has no personal
    data), and the debtors stay due for the next run."""
    queries = _ensure_queries(session, run_id, registry_id, debtor_ids, None)
    for chunk in db.chunks(list(queries.values())):
        session.execute(
            update(Query).where(Query.id.in_(chunk)).values(status="failed", error=scrub_text(reason)[:500])
        )


def pending_requests(session: Session) -> list[tuple[int, int, str]]:
    """(run id, registry id, request reference) of queries whose answers are still to be collected."""
    rows = session.execute(
        select(Query.run_id, Query.registry_id, Query.registry_reference)
        .where(Query.status == LookupStatus.PENDING, Query.registry_reference.is_not(None))
        .distinct()
    )
    return [(run, registry, ref) for run, registry, ref in rows if ref]


def _run_queries(
    session: Session, run_id: int, registry_id: int, debtor_ids: Sequence[int]
) -> dict[int, int]:
    """This run's lookups at one registry about these debtors: debtor id -> query id."""
    found: dict[int, int] = {}
    for chunk in db.chunks(debtor_ids):
        rows = session.execute(
            select(Query.debtor_id, Query.id).where(
                Query.run_id == run_id, Query.registry_id == registry_id, Query.debtor_id.in_(chunk)
            )
        )
        found.update((debtor_id, query_id) for debtor_id, query_id in rows)
    return found


def _ensure_queries(
    session: Session,
    run_id: int,
    registry_id: int,
    debtor_ids: Sequence[int],
    ref: str | None,
) -> dict[int, int]:
    """The run's lookups of these debtors at the registry, written now if they were not before (an answer
    collected or recorded without `record_sent`): debtor id -> query id."""
    queries = _run_queries(session, run_id, registry_id, debtor_ids)
    missing = [d for d in debtor_ids if d not in queries]
    if missing:
        _insert_sent(session, run_id, registry_id, missing, ref)
        queries.update(_run_queries(session, run_id, registry_id, missing))
    return queries


def cases_of(session: Session, debtor_ids: Sequence[int]) -> dict[str, dict[int, dict[int, str]]]:
    """status -> debtor id -> {case id: case number}: the debtors' cases, by status.

    The status is filtered here, not in SQL: with `cases.status = ?` in the query, SQLite walked every case
    of that status to find a batch's few (bench/README.md has the figures); by the debtors' index it reads
    only their links."""
    rows = session.execute(
        select(CaseDebtor.debtor_id, Case.id, Case.case_number, Case.status)
        .join(Case, Case.id == CaseDebtor.case_id)
        .where(CaseDebtor.debtor_id.in_(debtor_ids))
    )
    found: dict[str, dict[int, dict[int, str]]] = {}
    for debtor_id, case_id, number, status in rows:
        found.setdefault(status, {}).setdefault(debtor_id, {})[case_id] = number
    return found


def _others(report: AssetReport) -> dict[str, object] | None:
    if not report.other_measures:
        return None
    return {
        "measures": [
            {
                "authority": m.authority,
                "amount_fen": m.amount_fen,
                "expires_on": m.expires_on.isoformat() if m.expires_on else None,
            }
            for m in report.other_measures
        ]
    }


_NEW_ASSET_COLUMNS = (
    "debtor_id",
    "registry_id",
    "kind",
    "identifier",
    "balance_fen",
    "description",
    "other_measures",
    "purpose",
    "first_query_id",
    "first_seen_at",
    "last_seen_at",
)


def _new_asset(
    debtor_id: int, registry_id: int, query_id: int, report: AssetReport, now: dt.datetime
) -> Asset:
    """A hit not seen before, as an object outside the session (what the rest of the reply reads of it);
    `record_reply` inserts the reply's new assets together, as rows."""
    return Asset(
        debtor_id=debtor_id,
        registry_id=registry_id,
        kind=report.asset_kind.value,
        identifier=report.identifier,
        balance_fen=report.balance_fen,
        description=report.description,
        other_measures=_others(report),
        purpose=report.purpose,
        first_query_id=query_id,
        first_seen_at=now,
        last_seen_at=now,
    )


def update_asset(asset: Asset, report: AssetReport, now: dt.datetime) -> bool:
    """Bring a known asset up to date; True when its balance or others' measures changed."""
    others = _others(report)
    changed = asset.balance_fen != report.balance_fen or asset.other_measures != others
    asset.balance_fen, asset.other_measures, asset.last_seen_at = report.balance_fen, others, now
    asset.purpose = report.purpose
    if report.description:
        asset.description = report.description
    return changed


def _hit_payload(registry_code: str, asset: Asset) -> dict[str, object]:
    return {
        "registry": registry_code,
        "kind": asset.kind,
        "asset": mask_account(asset.identifier),
        "balance_fen": asset.balance_fen,
        "others": len((asset.other_measures or {}).get("measures", [])),
    }
