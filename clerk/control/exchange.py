"""Exactly once: write down, send once, settle by key. The one mechanism by which the clerk sends anything
that changes what a debtor holds: freezes and seizures (measures, `control.measures`) and renewals,
releases and deductions (actions, `control.actions`).

1. The use case that decides writes each request down first, with its own idempotency key, status
   `requested`, in the transaction that decided it (`control.plan_cases`, `control.write_action`).
2. `send` sends them (concurrently; each registry's client keeps its own limits) and records the answers
   as they come, those of a second together. A registry error that is not a refusal
   (`connectors.base.is_refusal`) leaves the request `requested`: an answer that cannot be read is an
   unknown outcome, flagged for a person once, never a refusal.
3. `settle` takes what stayed `requested` (a crash between 1 and 3, a lost reply, an answer "later") and
   asks the registry the key's status: an answer is recorded; a key the registry never saw is sent again,
   with the same key. Nothing is sent twice, nothing is lost.

What differs between measures and actions (how a request is read, sent and recorded, and counted) is an
`Exchange`; this module holds what is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk.context import Context
from clerk.control.counts import Counts
from clerk.store import db
from connectors.base import (
    ControlReply,
    ControlRequest,
    DeductReply,
    DeductRequest,
    RegistryError,
    RegistryPort,
    ReleaseRequest,
    RenewRequest,
    is_unreadable,
)
from models.status import MeasureStatus
from models.tables import ControlMeasure, MeasureAction

#: How long answers gather before they are recorded together, in seconds (unless every request is answered
#: sooner): a sweep's page of freezes answered within it is one transaction, not one per answer that
#: happened to arrive while the last was written (bench/README.md item 24), and a freeze is still written
#: down within seconds of its answer.
RECORD_EVERY_S = 1.0

Request = ControlRequest | RenewRequest | ReleaseRequest | DeductRequest
Reply = ControlReply | DeductReply
Answer = Reply | RegistryError


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A written-down request ready to send: which row (a measure's or an action's id), which registry, and
    the request (it holds personal data: keep it in memory, never in a task's arguments or results)."""

    id: int
    kind: str  # the measure's kind (freeze, seizure) or the action's (renew, release, deduct)
    registry: str
    request: Request

    @property
    def key(self) -> str:
        return self.request.idempotency_key


class Exchange(Protocol):
    """How one kind of written-down request is read, sent, recorded and counted."""

    #: Whether answers that arrive together are recorded in one transaction (measures: yes, a page of a
    #: sweep's freezes at once; actions: each in its own, as each may change what a case owes).
    batched: bool

    @property
    def rows(self) -> type[ControlMeasure] | type[MeasureAction]:
        """The table the requests are written down in (`settle` reads what stayed `requested` there)."""
        ...

    def load(self, session: Session, ids: Sequence[int]) -> list[Outgoing]:
        """The requests of these ids that are still `requested`, in id order."""
        ...

    def asks_status(self, item: Outgoing) -> bool:
        """Whether the registry answers this request's key's status (else it is simply sent again)."""
        ...

    async def call(self, registry: RegistryPort, item: Outgoing) -> Reply: ...

    def record(self, session: Session, answers: Sequence[tuple[Outgoing, Answer]]) -> list[str]:
        """Record the answers in the caller's transaction; each row's status, in order. Recording an answer
        again changes nothing."""
        ...

    def count(self, counts: Counts, item: Outgoing, answer: Answer, status: str) -> None: ...


def requested_before(
    session: Session,
    rows: type[ControlMeasure] | type[MeasureAction],
    older_than: dt.datetime,
    among: Sequence[int] | None = None,
) -> list[int]:
    """The ids of measures or actions written down before `older_than` and still `requested` (both kinds
    name it so), in id order, of those `among` when given: what `settle` asks about."""
    stmt = select(rows.id).where(rows.status == MeasureStatus.REQUESTED, rows.created_at < older_than)
    if among is not None:
        stmt = stmt.where(rows.id.in_(among))
    return list(session.scalars(stmt.order_by(rows.id)))


async def send(ctx: Context, exchange: Exchange, ids: Sequence[int]) -> Counts:
    """Send the written-down requests of these ids that are still `requested` (`send_items`)."""
    return await send_items(ctx, exchange, await db.read(ctx.sessions, exchange.load, ids))


async def send_items(ctx: Context, exchange: Exchange, items: Sequence[Outgoing]) -> Counts:
    """Send written-down requests (as the transaction that wrote them down made them, or as read) and
    record their answers: those that arrive within `RECORD_EVERY_S` of the first unrecorded one, or while
    the last ones were being written, go together (in one transaction when `exchange.batched`). A request
    to a registry not at hand stays `requested`, counted unconfirmed."""
    registries = ctx.ports
    counts = Counts()
    sendable = [item for item in items if item.registry in registries]
    counts.unconfirmed += len(items) - len(sendable)
    arrived: list[tuple[Outgoing, Answer | None]] = []
    expected = len(sendable)  # answers not yet taken to record
    some, every = asyncio.Event(), asyncio.Event()

    async def one(item: Outgoing) -> None:
        answer: Answer | None = None
        try:
            answer = await exchange.call(registries[item.registry], item)
        except RegistryError as exc:
            answer = exc
        finally:
            arrived.append((item, answer))  # None: an unexpected error, raised by gather below
            some.set()
            if len(arrived) == expected:
                every.set()

    async def recorder() -> None:
        nonlocal expected
        while expected:
            await some.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(every.wait(), RECORD_EVERY_S)
            group = arrived[:]
            arrived.clear()
            some.clear()
            expected -= len(group)
            answered = [(item, answer) for item, answer in group if answer is not None]
            await _record(ctx.sessions, exchange, answered, counts)

    await asyncio.gather(recorder(), *(one(item) for item in sendable))
    return counts


async def settle(
    ctx: Context, exchange: Exchange, older_than: dt.datetime, among: Sequence[int] | None = None
) -> Counts:
    """Requests written down before `older_than` (of those `among`, when given) and never confirmed: the
    key's status says what happened (recorded); a key the registry never saw is sent again, with the same
    key."""

    def load(session: Session) -> list[Outgoing]:
        return exchange.load(session, requested_before(session, exchange.rows, older_than, among))

    sessions = ctx.sessions
    counts = Counts()
    unseen: list[int] = []
    for item in await db.read(sessions, load):
        registry = ctx.ports.get(item.registry)
        if registry is None:
            continue
        if not exchange.asks_status(item):
            unseen.append(item.id)
            continue
        try:
            reply = await registry.status(item.key)
        except RegistryError as exc:
            if is_unreadable(exc):  # answered, unreadably: flagged for a person once, still open
                await _record(sessions, exchange, [(item, exc)], counts)
            else:
                counts.unconfirmed += 1
            continue
        if reply is None:
            unseen.append(item.id)
        else:
            await _record(sessions, exchange, [(item, reply)], counts)
    if unseen:
        counts.add(await send(ctx, exchange, unseen))
    return counts


async def _record(
    sessions: sessionmaker[Session],
    exchange: Exchange,
    answered: Sequence[tuple[Outgoing, Answer]],
    counts: Counts,
) -> None:
    if exchange.batched:
        statuses = await db.write(sessions, exchange.record, answered)
    else:
        statuses = [(await db.write(sessions, exchange.record, [one]))[0] for one in answered]
    for (item, answer), status in zip(answered, statuses, strict=True):
        exchange.count(counts, item, answer, status)
