"""Freezes and seizures, sent and settled: plan a batch of cases' measures, send them once, settle the ones
never confirmed, and what a case query would do (a dry run). Sending and settling are the one mechanism of
`control.exchange`; `Measures` says how a measure is read, sent, recorded and counted.

Each step takes a sessionmaker and the registries (by their port) and returns counts only: no personal data
leaves here, so flows can pass ids in and counts out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk import querying
from clerk.context import Context
from clerk.control import actions, answers, exchange
from clerk.control.counts import Counts
from clerk.control.exchange import Answer, Outgoing, Reply
from clerk.control.planning import plan, plan_cases, request_of
from clerk.control.sheet import case_sheet
from clerk.store import db
from connectors.base import (
    ControlReply,
    ControlRequest,
    MeasureKind,
    RegistryError,
    RegistryPort,
)
from models import casesheet
from models.status import MeasureStatus
from models.tables import Asset, Case, ControlMeasure, Registry


def outgoing(session: Session, measure_ids: Sequence[int]) -> list[Outgoing]:
    """The measures of these ids still `requested`, as requests. Columns, not objects: a control page
    sends a thousand measures (their ORM objects and the assets' were 90 % of this read; bench/README.md
    item 23)."""
    rows = db.all_rows(
        session,
        select(  # named as `request_of` names them
            ControlMeasure.id.label("measure_id"),
            ControlMeasure.kind,
            ControlMeasure.idempotency_key.label("key"),
            ControlMeasure.requested_amount_fen.label("amount"),
            Asset.debtor_id,
            Asset.identifier,
            Asset.kind.label("asset_kind"),
            Case.case_number,
            Registry.code.label("registry"),
        )
        .join(Asset, Asset.id == ControlMeasure.asset_id)
        .join(Case, Case.id == ControlMeasure.case_id)
        .join(Registry, Registry.id == ControlMeasure.registry_id)
        .where(ControlMeasure.id.in_(measure_ids), ControlMeasure.status == MeasureStatus.REQUESTED),
    )
    return [request_of(**row._asdict()) for row in sorted(rows)]


@dataclass
class Measures:
    """The exchange of freezes and seizures (`control.exchange.Exchange`)."""

    actor: str
    #: Releases of what registries held beyond what was asked, written down while recording: sent in the
    #: same run (`_releasing_excess`).
    excess: list[int] = field(default_factory=list)
    #: The registry of each answer found invalid for the first time (one entry per measure).
    invalid: list[str] = field(default_factory=list)
    batched: bool = True
    rows: type[ControlMeasure] = ControlMeasure

    def load(self, session: Session, ids: Sequence[int]) -> list[Outgoing]:
        return outgoing(session, ids)

    def asks_status(self, item: Outgoing) -> bool:
        return True

    async def call(self, registry: RegistryPort, item: Outgoing) -> Reply:
        assert isinstance(item.request, ControlRequest)
        return await registry.control(item.request)

    def record(self, session: Session, answered: Sequence[tuple[Outgoing, Answer]]) -> list[str]:
        replies = [(item.id, a) for item, a in answered if isinstance(a, ControlReply)]
        invalid: list[int] = []
        recorded = iter(answers.record_replies(session, replies, self.actor, self.excess, invalid))
        statuses = []
        for item, answer in answered:
            if isinstance(answer, ControlReply):
                statuses.append(next(recorded))
            else:
                assert isinstance(answer, RegistryError), "a measure is answered by a ControlReply"
                statuses.append(answers.record_error(session, item.id, answer, self.actor, invalid))
        registry = {item.id: item.registry for item, _ in answered}
        self.invalid.extend(registry[measure_id] for measure_id in invalid)
        return statuses

    def count(self, counts: Counts, item: Outgoing, answer: Answer, status: str) -> None:
        if isinstance(answer, ControlReply):
            counts.count(status, answer, seizure=item.kind == MeasureKind.SEIZURE)
        elif status == MeasureStatus.FAILED:
            counts.refused += 1
        else:
            counts.unconfirmed += 1


async def control_cases(ctx: Context, case_ids: Sequence[int]) -> Counts:
    """Plan the cases' measures (written down first, in one transaction), then send them and record the
    answers."""
    counts = Counts(cases=len(case_ids))
    plans = await db.write(ctx.sessions, plan_cases, case_ids, ctx.today(), ctx.policy, ctx.actor)
    for planned in plans:
        counts.note(planned)
    planned_now = [item for planned in plans for item in planned.outgoing]
    counts.requested = len(planned_now)
    if planned_now:
        counts.add(await send(ctx, planned_now))
    return counts


async def send(ctx: Context, items: Sequence[Outgoing]) -> Counts:
    """Send measures as their plan made them (`Plan.outgoing`: not read back) and record the answers
    (`control.exchange.send_items`); what a registry held beyond what was asked is released at once."""
    return await _releasing_excess(ctx, lambda m: exchange.send_items(ctx, m, items))


async def resolve_unconfirmed(
    ctx: Context, older_than: dt.datetime, among: Sequence[int] | None = None
) -> Counts:
    """Measures written down but never confirmed (a crash, a lost reply, an answer "later", an answer that
    could not be read), of those `among` when given, settled by their keys (`control.exchange.settle`);
    what a registry held beyond what was asked is released at once."""
    return await _releasing_excess(ctx, lambda m: exchange.settle(ctx, m, older_than, among))


async def _releasing_excess(ctx: Context, step: Callable[[Measures], Awaitable[Counts]]) -> Counts:
    """`step` (a send or a settle) on the measures' exchange; then the releases of what registries held
    beyond what was asked, which recording the answers wrote down (a release not confirmed now is settled by
    its key in the collect run)."""
    measures = Measures(ctx.actor)
    counts = await step(measures)
    counts.flagged(measures.invalid)
    if measures.excess:
        released = await actions.send_actions(ctx, measures.excess)
        counts.excess_released += released.done
    return counts


async def dry_run_case(
    ctx: Context, case_id: int
) -> tuple[list[querying.BatchResult], Counts, casesheet.Sheet]:
    """What a case query would record and place: the query page (`querying.query_page`) and the plan, in
    one transaction that is rolled back (`db.rolled_back`). The registries are asked; nothing is written
    and no control request is sent. The sheet shows the plan."""
    today = ctx.today()
    with db.rolled_back(ctx.sessions) as sessions:
        dry = replace(ctx, sessions=sessions)
        run_id, debtor_ids = await db.write(sessions, _dry_start, case_id)
        batches = await querying.query_page(dry, run_id, debtor_ids)
        planned = await db.write(sessions, plan, case_id, today, ctx.policy, ctx.actor)
        counts = Counts(cases=1, requested=len(planned.measure_ids))
        counts.note(planned)
        sheet = await db.read(sessions, case_sheet, planned.case_number, today, ctx.policy, planned=True)
        return batches, counts, sheet


def _dry_start(session: Session, case_id: int) -> tuple[int, list[int]]:
    return querying.start_run(session, "case-query (dry run)"), querying.debtor_ids_of_case(session, case_id)
