"""The clerk's work, one step at a time, for the flows (and the tests) to call: query a batch of debtors
at one registry, plan and place controls for cases, resolve unconfirmed measures, collect late answers.

Each step takes a sessionmaker and connectors and returns counts only: no personal data leaves here, so
flows can pass ids in and counts out. Database work runs in a worker thread, off the event loop that
carries the registries' HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, lifecycle, querying
from connectors.adapter import HttpConnector
from connectors.base import (
    ControlOutcome,
    ControlReply,
    QueryReply,
    QueryRequest,
    RegistryError,
    RegistryUnavailable,
    SubjectStatus,
)
from models.supervision import bureau_today
from models.tables import Registry


@dataclass
class BatchResult:
    registry: str
    recorded: querying.Recorded = field(default_factory=querying.Recorded)
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


async def query_batch(
    sessions: sessionmaker[Session],
    connector: HttpConnector,
    registry_id: int,
    run_id: int,
    debtor_ids: Sequence[int],
    actor: str,
) -> BatchResult:
    """Ask one registry about a batch of debtors and record the answer; a failure is recorded, not raised."""
    result = BatchResult(connector.code)

    def load() -> QueryRequest:
        ref = querying.new_request_ref(run_id, connector.code)
        with sessions.begin() as session:
            subjects = querying.subjects(session, debtor_ids)
            # Written down before the request leaves: a crash before its answer is recorded leaves these
            # lookups `sent`, and their debtors due again (see querying.due_debtor_ids).
            querying.record_sent(
                session, run_id=run_id, registry_id=registry_id, debtor_ids=debtor_ids, ref=ref
            )
        return QueryRequest(request_ref=ref, subjects=tuple(subjects))

    request = await asyncio.to_thread(load)
    try:
        reply = await connector.query(request)
    except RegistryError as exc:
        result.failed, result.error = len(debtor_ids), exc.reason
        result.skipped = isinstance(exc, RegistryUnavailable)
        reason = str(exc)

        def fail() -> None:
            with sessions.begin() as session:
                querying.record_failure(
                    session, run_id=run_id, registry_id=registry_id, debtor_ids=debtor_ids, reason=reason
                )

        await asyncio.to_thread(fail)
        return result

    def record() -> querying.Recorded:
        return record_query_reply(sessions, run_id, registry_id, connector.code, reply, actor)

    result.recorded = await asyncio.to_thread(record)
    return result


def record_query_reply(
    sessions: sessionmaker[Session], run_id: int, registry_id: int, code: str, reply: QueryReply, actor: str
) -> querying.Recorded:
    """Record a reply in a transaction of its own. Two clerks recording the same new asset at once (two
    sweeps, or a sweep and a case query, on PostgreSQL) collide on its unique key: the loser records again,
    and now finds the asset (recording is idempotent)."""
    for attempt in range(3):
        try:
            with sessions.begin() as session:
                return querying.record_reply(
                    session,
                    run_id=run_id,
                    registry_id=registry_id,
                    registry_code=code,
                    reply=reply,
                    actor=actor,
                )
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


#: How many cases short of what they owe a run's result names; the rest are counted only, so a sweep of a
#: province holds no more than these whatever it controls.
SHORT_NAMED = 200


@dataclass
class ControlResult:
    cases: int = 0
    requested: int = 0
    freeze_requested_fen: int = 0
    effective: int = 0
    frozen_fen: int = 0
    partial: int = 0
    queued: int = 0
    refused: int = 0
    pending: int = 0
    unconfirmed: int = 0
    seized: int = 0
    short_cases: int = 0  # cases whose plan left part of what they owe uncovered
    excess_released: int = 0  # releases of what a registry held beyond what was asked (its error)
    short: list[tuple[str, int]] = field(default_factory=list)  # (case number, fen), the first SHORT_NAMED

    def add(self, other: ControlResult) -> None:
        querying.add_counts(self, other)
        self.short.extend(other.short[: SHORT_NAMED - len(self.short)])

    def note(self, plan: control.Plan) -> None:
        """Count a case's plan: what it asks to freeze, and whether it leaves the case short."""
        self.freeze_requested_fen += plan.freeze_fen
        if plan.short_fen:
            self.short_cases += 1
            if len(self.short) < SHORT_NAMED:
                self.short.append((plan.case_number, plan.short_fen))

    def count(self, status: str, reply: ControlReply, seizure: bool) -> None:
        """Count one recorded answer by the status `control.record_reply` returned."""
        if status == "requested":  # answered "later": collected by its key
            self.pending += 1
        elif status == "effective":
            self.effective += 1
            self.frozen_fen += reply.amount_fen or 0
            self.partial += reply.outcome is ControlOutcome.PARTIAL
            self.seized += seizure
        elif status == "queued":
            self.queued += 1
        elif status == "failed":
            self.refused += 1


async def control_cases(
    sessions: sessionmaker[Session],
    connectors: Mapping[str, HttpConnector],
    case_ids: Sequence[int],
    today: dt.date,
    policy: control.Policy,
    actor: str,
) -> ControlResult:
    """Plan the cases' measures (written down first, in one transaction), then send them and record the
    answers."""
    result = ControlResult(cases=len(case_ids))

    def plan_all() -> list[int]:
        with sessions.begin() as session:
            plans = control.plan_cases(session, case_ids, today, policy, actor)
        for planned in plans:
            result.note(planned)
        return [measure_id for planned in plans for measure_id in planned.measure_ids]

    measure_ids = await asyncio.to_thread(plan_all)
    result.requested = len(measure_ids)
    if not measure_ids:
        return result
    result.add(await send(sessions, connectors, measure_ids, actor))
    return result


async def send(
    sessions: sessionmaker[Session],
    connectors: Mapping[str, HttpConnector],
    measure_ids: Sequence[int],
    actor: str,
) -> ControlResult:
    """Send written-down measures (concurrently; each registry's client keeps its own limits) and record
    the answers as they come: those that arrived while the last ones were being written go together, in
    one transaction (a crash before they are written leaves their measures `requested`, settled by key)."""
    result = ControlResult()

    def load() -> list[control.Outgoing]:
        with sessions() as session:
            return control.outgoing(session, measure_ids)

    items = await asyncio.to_thread(load)
    answers: asyncio.Queue[tuple[control.Outgoing, ControlReply | RegistryError | None]] = asyncio.Queue()

    async def one(item: control.Outgoing) -> None:
        answer: ControlReply | RegistryError | None = None
        try:
            answer = await connectors[item.registry].control(item.request)
        except RegistryError as exc:
            answer = exc
        finally:
            answers.put_nowait((item, answer))  # None: an unexpected error, raised by gather below

    async def recorder(expected: int) -> None:
        while expected:
            group = [await answers.get()]
            while not answers.empty():
                group.append(answers.get_nowait())
            expected -= len(group)
            answered = [(item, answer) for item, answer in group if answer is not None]
            statuses = await asyncio.to_thread(_record_answers, sessions, answered, actor, excess)
            for (item, answer), status in zip(answered, statuses, strict=True):
                if isinstance(answer, ControlReply):
                    result.count(status, answer, seizure=item.request.amount_fen is None)
                else:
                    result.unconfirmed += 1

    excess: list[int] = []  # releases of what registries held beyond what was asked
    sendable = [item for item in items if item.registry in connectors]
    result.unconfirmed += len(items) - len(sendable)
    await asyncio.gather(recorder(len(sendable)), *(one(item) for item in sendable))
    await release_excess(sessions, connectors, excess, actor, result)
    return result


async def release_excess(
    sessions: sessionmaker[Session],
    connectors: Mapping[str, HttpConnector],
    action_ids: Sequence[int],
    actor: str,
    result: ControlResult,
) -> None:
    """Lift at once what a registry held beyond what was asked (`control.record_replies` wrote the releases
    down): a release that is not confirmed now is settled by its key in the collect run."""
    if not action_ids:
        return
    tally = await lifecycle.send_actions(sessions, connectors, action_ids, actor, bureau_today(), "")
    result.excess_released += tally.done


def _record_answers(
    sessions: sessionmaker[Session],
    answers: Sequence[tuple[control.Outgoing, ControlReply | RegistryError]],
    actor: str,
    excess: list[int],
) -> list[str]:
    """Record replies and errors in one transaction; each measure's status, in order (releases of what a
    registry held beyond what was asked go into `excess`)."""
    with sessions.begin() as session:
        replies = [(item.measure_id, a) for item, a in answers if isinstance(a, ControlReply)]
        recorded = iter(control.record_replies(session, replies, actor, excess))
        return [
            next(recorded)
            if isinstance(answer, ControlReply)
            else control.record_error(session, item.measure_id, answer, actor)
            for item, answer in answers
        ]


async def resolve_unconfirmed(
    sessions: sessionmaker[Session],
    connectors: Mapping[str, HttpConnector],
    older_than: dt.datetime,
    actor: str,
) -> ControlResult:
    """Measures written down but never confirmed (a crash, a lost reply, an answer "later"): ask the status
    of each key; a key the registry never saw is sent again, with the same key."""

    def load() -> list[control.Outgoing]:
        with sessions() as session:
            return control.outgoing(session, control.unresolved(session, older_than))

    result = ControlResult()
    pending = await asyncio.to_thread(load)
    unseen: list[int] = []
    excess: list[int] = []
    for item in pending:
        connector = connectors.get(item.registry)
        if connector is None:
            continue
        try:
            reply = await connector.status(item.request.idempotency_key)
        except RegistryError:
            result.unconfirmed += 1
            continue
        if reply is None:
            unseen.append(item.measure_id)
        else:
            [status] = await asyncio.to_thread(_record_answers, sessions, [(item, reply)], actor, excess)
            result.count(status, reply, seizure=item.request.amount_fen is None)
    await release_excess(sessions, connectors, excess, actor, result)
    if unseen:
        result.add(await send(sessions, connectors, unseen, actor))
    return result


async def collect_queries(
    sessions: sessionmaker[Session],
    connectors: Mapping[str, HttpConnector],
    registry_ids: Mapping[str, int],
    actor: str,
) -> querying.Recorded:
    """Answers to queries that registries accepted "for later"."""
    codes = {v: k for k, v in registry_ids.items()}

    def load() -> list[tuple[int, int, str]]:
        with sessions() as session:
            return querying.pending_requests(session)

    total = querying.Recorded()
    for run_id, registry_id, ref in await asyncio.to_thread(load):
        code = codes.get(registry_id)
        if code is None or code not in connectors:
            continue
        try:
            reply = await connectors[code].collect(ref)
        except RegistryError:
            continue
        if any(r.status is SubjectStatus.PENDING for r in reply.results):
            continue

        total.add(
            await asyncio.to_thread(record_query_reply, sessions, run_id, registry_id, code, reply, actor)
        )
    return total


async def dry_run_case(
    sessions: sessionmaker[Session],
    connectors: Mapping[str, HttpConnector],
    case_id: int,
    today: dt.date,
    policy: control.Policy,
    actor: str,
) -> tuple[list[BatchResult], ControlResult]:
    """What a case query would record and place, computed in one transaction that is rolled back: the
    registries are asked, nothing is written and no control request is sent."""
    session = sessions()
    session.begin()
    try:
        run_id, registry_ids, debtor_ids = await asyncio.to_thread(_dry_start, session, connectors, case_id)
        subjects = tuple(await asyncio.to_thread(querying.subjects, session, debtor_ids))
        batches = []
        for code, connector in connectors.items():
            request = QueryRequest(request_ref=querying.new_request_ref(run_id, code), subjects=subjects)
            batch = BatchResult(code)
            try:
                reply = await connector.query(request)
            except RegistryError as exc:
                batch.failed, batch.error = len(debtor_ids), exc.reason
            else:
                batch.recorded = await asyncio.to_thread(
                    querying.record_reply,
                    session,
                    run_id=run_id,
                    registry_id=registry_ids[code],
                    registry_code=code,
                    reply=reply,
                    actor=actor,
                )
            batches.append(batch)
        planned = await asyncio.to_thread(control.plan, session, case_id, today, policy, actor)
        result = ControlResult(cases=1, requested=len(planned.measure_ids))
        result.note(planned)
        return batches, result
    finally:
        await asyncio.to_thread(session.rollback)
        session.close()


def _dry_start(
    session: Session, connectors: Mapping[str, HttpConnector], case_id: int
) -> tuple[int, dict[str, int], list[int]]:
    run_id = querying.start_run(session, "case-query (dry run)")
    registry_ids = {
        r.code: r.id for r in session.scalars(select(Registry).where(Registry.code.in_(list(connectors))))
    }
    return run_id, registry_ids, querying.debtor_ids_of_case(session, case_id)
