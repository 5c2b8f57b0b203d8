"""The clerk's work, one step at a time, for the flows (and the tests) to call: query a batch of debtors
at one registry, plan and place controls for cases, resolve unconfirmed measures, collect late answers.

Each step takes the run's context (`clerk.context`) and returns counts only: no personal data leaves here, so
flows can pass ids in and counts out. Database work runs as `db.run` runs it: in a worker thread, off the
event loop that carries the registries' HTTP, but on SQLite in the loop's own thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from clerk.context import Context
from clerk.querying import record, runs
from clerk.querying.record import Recorded
from clerk.store import db
from connectors.base import (
    QueryReply,
    QueryRequest,
    RegistryError,
    RegistryUnavailable,
    SubjectStatus,
)
from models.tables import utcnow

T = TypeVar("T")


@dataclass
class BatchResult:
    registry: str
    recorded: Recorded = field(default_factory=Recorded)
    failed: int = 0
    error: str | None = None
    skipped: bool = False  # the registry's circuit breaker was open


@dataclass
class Tally:
    """Batches' results added up per registry as they come: a sweep keeps this, not its batches."""

    registries: dict[str, dict[str, int]] = field(default_factory=dict)
    batches: int = 0
    errored: int = 0  # batches no registry answered
    errors: set[str] = field(default_factory=set)  # "code: reason" of those

    @classmethod
    def of(cls, batches: Iterable[BatchResult]) -> Tally:
        tally = cls()
        tally.add(batches)
        return tally

    def add(self, batches: Iterable[BatchResult]) -> None:
        for b in batches:
            row = self.registries.setdefault(
                b.registry,
                dict.fromkeys(
                    ("queried", "hits", "new assets", "changed", "pending", "failed", "skipped batches"), 0
                ),
            )
            r = b.recorded
            row["queried"] += r.queried + b.failed
            row["hits"] += r.hits
            row["new assets"] += r.new_assets
            row["changed"] += r.changed
            row["pending"] += r.pending
            row["failed"] += b.failed
            row["skipped batches"] += b.skipped
            self.batches += 1
            if b.error:
                self.errored += 1
                self.errors.add(f"{b.registry}: {b.error}")

    def total(self, column: str) -> int:
        """A column summed over the registries: "queried" (answered or not), "hits", "failed", …"""
        return sum(row[column] for row in self.registries.values())

    def unanswered(self) -> str | None:
        """Each registry's reason, when there were lookups and none of them was answered; else None."""
        if not self.batches or self.errored < self.batches:
            return None
        return "; ".join(sorted(self.errors))


async def query_batch(ctx: Context, registry: str, run_id: int, debtor_ids: Sequence[int]) -> BatchResult:
    """Ask one registry about a batch of debtors and record the answer, the debtors answered stamped
    queried (a case query's): `query_page` with one registry and one batch; a failure is recorded, not
    raised."""
    one = replace(ctx.registries[registry], batch_size=max(1, len(debtor_ids)))
    [result] = await query_page(replace(ctx, registries={registry: one}), run_id, debtor_ids, stamp=True)
    return result


async def query_page(
    ctx: Context, run_id: int, debtor_ids: Sequence[int], *, stamp: bool = False
) -> list[BatchResult]:
    """Ask every registry about a page of debtors, in batches of each one's size, all at once, and record
    the answers (a failure is recorded, not raised), a result per batch. Every answer and failure is
    recorded in one transaction once the last has come, each lookup written once, with its answer
    (`record.record_replies`). The debtors answered are stamped queried with `stamp`; without, the sweep
    stamps its page once, after (`sweeping.after_answers`).

    A crash before the answers are recorded leaves the debtors due (none is stamped): they are asked again,
    and nothing is recorded twice. With `stamp`, a debtor may be stamped by another registry's batch
    recorded on its own (a case query asks each registry in a task of its own): then each lookup is
    written down (`sent`) before its request leaves, so that a crash leaves a lookup never answered, which
    makes its debtor due again (`querying.due`). A sweep's page needs no such trace: its answers are
    recorded together, and its debtors stamped after. (Writing every lookup twice cost the re-sweep on
    PostgreSQL half its speed: bench/README.md item 26.)"""
    sessions, registries, actor = ctx.sessions, ctx.registries, ctx.actor
    batches = [
        (code, list(debtor_ids[i : i + r.batch_size]))
        for code, r in registries.items()
        for i in range(0, len(debtor_ids), r.batch_size)
    ]

    def load() -> tuple[list[QueryRequest], list[dict[int, int] | None]]:
        refs = [runs.new_request_ref(run_id, code) for code, _ in batches]
        with sessions.begin() as session:
            subjects = {int(s.ref): s for s in runs.subjects(session, debtor_ids)}
            queries: list[dict[int, int] | None] = [None] * len(batches)
            if stamp:  # written down ahead (see above)
                asked = [
                    (registries[code].id, ref, ids) for (code, ids), ref in zip(batches, refs, strict=True)
                ]
                queries = list(record.record_sent_many(session, run_id, asked))
        requests = [
            QueryRequest(request_ref=ref, subjects=tuple(subjects[d] for d in ids if d in subjects))
            for (_, ids), ref in zip(batches, refs, strict=True)
        ]
        return requests, queries

    requests, queries = await db.run(sessions, load)
    sent_at = utcnow()

    async def ask(code: str, request: QueryRequest) -> QueryReply | RegistryError:
        try:
            return await registries[code].port.query(request)
        except RegistryError as exc:
            return exc

    answers = await asyncio.gather(*(ask(code, r) for (code, _), r in zip(batches, requests, strict=True)))
    results = [BatchResult(code) for code, _ in batches]
    for result, (_, ids), answer in zip(results, batches, answers, strict=True):
        if isinstance(answer, RegistryError):
            result.failed, result.error = len(ids), answer.reason
            result.skipped = isinstance(answer, RegistryUnavailable)

    def record_all(session: Session) -> list[Recorded]:
        replies = []
        for (code, ids), query_ids, answer in zip(batches, queries, answers, strict=True):
            if isinstance(answer, RegistryError):
                record.record_failure(
                    session,
                    run_id=run_id,
                    registry_id=registries[code].id,
                    debtor_ids=ids,
                    reason=str(answer),
                    sent_at=sent_at,
                )
            else:
                replies.append(record.Reply(registries[code].id, code, answer, query_ids))
        cases = record.cases_of(session, debtor_ids)
        recorded = iter(
            record.record_replies(session, run_id, replies, actor, stamp=stamp, cases=cases, sent_at=sent_at)
        )
        return [Recorded() if isinstance(answer, RegistryError) else next(recorded) for answer in answers]

    for result, recorded in zip(results, await db.call(sessions, _recorded, record_all), strict=True):
        result.recorded = recorded
    return results


def _recorded(sessions: sessionmaker[Session], step: Callable[[Session], T]) -> T:
    """`step` in a transaction of its own, tried again when two clerks recording the same new asset at once
    (two sweeps, or a sweep and a case query, on PostgreSQL) collide on its unique key: the loser records
    again, and now finds the asset (recording is idempotent)."""
    for attempt in range(3):
        try:
            with sessions.begin() as session:
                return step(session)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def record_query_reply(
    sessions: sessionmaker[Session],
    run_id: int,
    registry_id: int,
    code: str,
    reply: QueryReply,
    actor: str,
    queries: Mapping[int, int] | None = None,
) -> Recorded:
    """Record a reply in a transaction of its own (`record.record_reply`), tried again on a collision
    (`_recorded`)."""

    def step(session: Session) -> Recorded:
        return record.record_reply(
            session,
            run_id=run_id,
            registry_id=registry_id,
            registry_code=code,
            reply=reply,
            actor=actor,
            queries=queries,
        )

    return _recorded(sessions, step)


async def collect_queries(ctx: Context) -> Recorded:
    """Answers to queries that registries accepted "for later"."""
    sessions, actor = ctx.sessions, ctx.actor
    codes = {r.id: code for code, r in ctx.registries.items()}

    def load() -> list[tuple[int, int, str]]:
        with sessions() as session:
            return record.pending_requests(session)

    total = Recorded()
    for run_id, registry_id, ref in await db.run(sessions, load):
        code = codes.get(registry_id)
        if code is None:
            continue
        try:
            reply = await ctx.registries[code].port.collect(ref)
        except RegistryError:
            continue
        if any(r.status is SubjectStatus.PENDING for r in reply.results):
            continue

        total.add(await db.call(sessions, record_query_reply, run_id, registry_id, code, reply, actor))
    return total
