"""A sweep, page by page: read a page of due debtors, ask every registry about them in batches and record
the answers (while the next page is read and asked), resume the terminated cases that the answers found
assets for, tell the applicants of cases with new hits, and control those cases (while the next page is
answered). Two pages at most are asked at once; their answers are taken, and their cases controlled, in
page order.

Controlling each page as it is answered freezes a deposit minutes after the registry reported it, not hours
later at the end of a province's sweep, and keeps memory flat: a page's results are folded into counts
(`querying.Tally`, `control.Counts`) and dropped. What the sweep still holds to its end: the ids of
the terminated cases re-queried without a hit, whose applicants are told once every page is done (a
co-debtor on a later page may still find something).

The flow passes its Prefect tasks as `ask` and `control`; benchmarks pass the plain use cases.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying, supervision
from clerk.casebook import notices
from clerk.context import Context
from clerk.store import collector, db
from models.supervision import bureau_today
from models.tables import Case, Notification, utcnow
from models.values import format_yuan

T = TypeVar("T")

#: Ask every registry about a page of debtor ids and record the answers: a result per batch.
Ask = Callable[[list[int]], Awaitable[list[querying.BatchResult]]]
#: Plan, send and record the measures of a batch of case ids.
Control = Callable[[list[int]], Awaitable[control.Counts]]
#: Told after each page: debtors done so far, debtors due in all.
Progress = Callable[[int, int], Awaitable[None]]

#: No shard: the whole case book.
EVERY_DEBTOR = querying.Shard()

#: Cases per control call (one Prefect task each in the flow): a page's cases at once, planned in one
#: transaction. (At 100 a call, a page's five control tasks cost the flow 10 % of its time at 20,000 debtors;
#: bench/README.md item 22.)
CONTROL_BATCH = 1000


@dataclass(frozen=True)
class Started:
    """A sweep's run, and what it sweeps: the debtors of `shard` due at `now` by `schedule`."""

    run_id: int
    due: int  # debtors due when the sweep started (for progress; pages are read as the sweep goes)
    at: dt.datetime
    now: dt.datetime
    schedule: querying.Schedule
    shard: querying.Shard


@dataclass
class Swept:
    debtors: int = 0
    tally: querying.Tally = field(default_factory=querying.Tally)
    control: control.Counts = field(default_factory=control.Counts)
    resumed: int = 0
    told_requeried: int = 0

    def summary(self, shard: querying.Shard) -> dict[str, object]:
        """What the run's row and the flow's result keep: counts only."""
        return {
            "debtors": self.debtors,
            "batches": self.tally.batches,
            "failed_lookups": self.tally.total("failed"),
            "pending_lookups": self.tally.total("pending"),
            "cases_controlled": self.control.cases,
            "cases_resumed": self.resumed,
            "effective": self.control.effective,
            "frozen_fen": self.control.frozen_fen,
            "shard": shard.index,
            "shards": shard.count,
        }

    def in_words(self) -> str:
        """The sweep's counts in one line for people (the log)."""
        counts = self.control
        text = (
            f"{self.tally.batches:,} batches, {counts.cases:,} cases controlled, "
            f"{counts.effective:,} measures in force, {format_yuan(counts.frozen_fen)} yuan frozen"
        )
        return text + (f", {self.resumed:,} terminated cases resumed" if self.resumed else "")

    def outcome(self) -> tuple[bool, str]:
        """Whether the sweep did its work (some registry answered), and the sentence that says so."""
        failed, pending = self.tally.total("failed"), self.tally.total("pending")
        reasons = self.tally.unanswered()
        if reasons is not None:
            return False, f"no registry answered: {failed:,} lookups failed ({reasons})"
        later = ""
        if pending:
            later = f", {pending:,} lookups answered 'later' (asked again unless answered within 24 h)"
        return True, f"{self.debtors:,} debtors swept, {failed:,} lookups failed{later}"


def start(
    ctx: Context,
    trigger: str,
    flow_run_id: str | None,
    schedule: querying.Schedule,
    shard: querying.Shard = EVERY_DEBTOR,
) -> Started:
    """Record the run and count the debtors due at the context's `now`."""
    at, now, sessions = utcnow(), ctx.now(), ctx.sessions
    with sessions.begin() as session:
        run_id = querying.start_run(session, trigger, flow_run_id)
    with sessions() as session:
        return Started(run_id, querying.count_due(session, now, schedule, shard), at, now, schedule, shard)


async def sweep(
    ctx: Context,
    started: Started,
    ask: Ask,
    control_cases: Control | None,
    *,
    page_size: int = 1000,
    progress: Progress | None = None,
) -> Swept:
    """Sweep the due debtors page by page (see the module); `control_cases` None asks without controlling."""
    sessions, today, actor = ctx.sessions, bureau_today(started.now), ctx.actor
    with collector.tuned_for_bulk():
        swept = Swept()
        requeried: set[int] = set()
        last = 0

        def next_page() -> list[int]:
            with sessions() as session:
                return querying.due_page(
                    session, started.now, started.schedule, last, page_size, started.shard
                )

        async def finish_page(cases: list[int], debtors: int) -> None:
            if control_cases is not None:
                for i in range(0, len(cases), CONTROL_BATCH):
                    swept.control.add(await control_cases(cases[i : i + CONTROL_BATCH]))
            swept.debtors += debtors
            if progress is not None:
                await progress(swept.debtors, max(started.due, swept.debtors))

        # The next page is asked while a page's answers are recorded, and a page is controlled while the next
        # one is answered, so that the sweeper's waits on the registries and on the database overlap instead
        # of taking turns: at most two pages asked at once, one page's control at a time, all in page order.
        finishing: asyncio.Task[None] | None = None
        asking: list[asyncio.Future[list[querying.BatchResult]]] = []

        async def take_answers(page: list[int], asked: asyncio.Future[list[querying.BatchResult]]) -> None:
            nonlocal finishing
            batches = await _first_error(asked, asking)
            asking.remove(asked)  # its results are folded into the counts below, and dropped
            swept.tally.add(batches)
            found: set[int] = set()
            touched: set[int] = set()
            answered: set[int] = set()
            for batch in batches:
                found |= batch.recorded.terminated_with_new_hits
                touched |= batch.recorded.cases_with_new_hits
                requeried.update(batch.recorded.terminated_queried)
                answered |= batch.recorded.answered
            resumed = await db.call(
                sessions, after_answers, found, touched, started.at, today, actor, answered
            )
            swept.resumed += len(resumed)
            if finishing is not None:
                await _first_error(finishing, asking)
            finishing = asyncio.create_task(finish_page(sorted(touched | set(resumed)), len(page)))

        try:
            previous: tuple[list[int], asyncio.Future[list[querying.BatchResult]]] | None = None
            while page := await db.run(sessions, next_page):
                last = page[-1]
                asking.append(asyncio.ensure_future(ask(page)))
                if previous is not None:
                    await take_answers(*previous)
                previous = (page, asking[-1])
            if previous is not None:
                await take_answers(*previous)
            if finishing is not None:
                await finishing
        finally:
            # The sweep failed while pages were asked or controlled: they stop too (lookups are recorded
            # together or not at all; measures were written down before they were sent, and are settled by
            # key), and the sweep's own error is the one raised.
            await _stop([*asking, *([finishing] if finishing is not None else [])])

        def tell() -> int:
            with sessions.begin() as session:
                return supervision.tell_applicants_of_requery(session, sorted(requeried), actor)

        if requeried:
            swept.told_requeried = await db.run(sessions, tell)
        return swept


async def _first_error(awaited: asyncio.Future[T], watched: Iterable[asyncio.Future[Any]]) -> T:
    """`awaited`'s result; but if one of `watched` (the pages being asked) fails first, its error at once:
    a sweep waiting on a page's control stops as soon as asking the next page failed."""
    others = [w for w in watched if w is not awaited]
    while True:
        running = [w for w in others if not w.done()]
        await asyncio.wait([awaited, *running], return_when=asyncio.FIRST_COMPLETED)
        for w in others:
            if w.done() and not w.cancelled() and (error := w.exception()) is not None:
                raise error
        if awaited.done():
            return awaited.result()


async def _stop(tasks: list[asyncio.Future[Any]]) -> None:
    """Cancel what is still running of a sweep's tasks and wait for it to stop; the errors of those that
    failed are retrieved (asyncio would log an error it thinks nobody saw), not raised."""
    running = [t for t in tasks if not t.done()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running)
    for task in tasks:
        if not task.cancelled():
            task.exception()


def after_answers(
    sessions: sessionmaker[Session],
    found: set[int],
    touched: set[int],
    since: dt.datetime,
    today: dt.date,
    actor: str,
    answered: Iterable[int] = (),
) -> list[int]:
    """After a page's answers: the debtors any registry answered are stamped queried, once for the page
    (the replies were recorded without: `querying.query_page`); terminated cases with hits
    resume as new 执恢 cases (their ids returned, to control); the applicant of each case with new hits is
    told, once a run (a case's debtors may fall on several pages)."""
    with sessions.begin() as session:
        querying.stamp_queried(session, answered, utcnow())
        resumed = supervision.resume(session, sorted(found), today, actor)
        told = _told_since(session, touched, "hits.found", since)
        unseen = sorted(
            db.all_rows(
                session,
                select(Case.id, Case.case_number).where(db.among(session, Case.id, sorted(touched - told))),
            )
        )
        notices.notify_many(
            session, [notices.Draft(i, "applicant", "hits.found", {"case": number}) for i, number in unseen]
        )
    return resumed


def _told_since(session: Session, case_ids: set[int], template: str, since: dt.datetime) -> set[int]:
    told = select(Notification.case_id).where(
        db.among(session, Notification.case_id, sorted(case_ids)),
        Notification.template == template,
        Notification.created_at >= since,
    )
    return {case_id for (case_id,) in db.all_rows(session, told)}


async def finish(
    ctx: Context, run_id: int, swept: Swept, shard: querying.Shard = EVERY_DEBTOR, **where: object
) -> dict[str, object]:
    """Record a query run's end (a sweep's or a case query's): completed when some registry answered, else
    failed, with its counts and `where` it ran; the summary is returned."""
    summary = swept.summary(shard) | where
    done, _ = swept.outcome()
    status = "completed" if done else "failed"
    await db.write(ctx.sessions, querying.finish_run, run_id, status, summary)
    return summary


async def sweep_due(
    ctx: Context,
    schedule: querying.Schedule,
    page_size: int = 1000,
    progress: Progress | None = None,
    shard: querying.Shard = EVERY_DEBTOR,
) -> Swept:
    """The sweep without Prefect (benchmarks, simulated clocks, crash tests): the flow's pages and steps,
    with the plain use cases in place of its tasks, started and finished on its run; with `shard`, one
    shard's debtors (as a province's sweep splits them among processes)."""
    started = await db.run(ctx.sessions, start, ctx, "sweep (plain)", None, schedule, shard)

    async def ask(debtor_ids: list[int]) -> list[querying.BatchResult]:
        return await querying.query_page(ctx, started.run_id, debtor_ids)

    async def control_cases(case_ids: list[int]) -> control.Counts:
        return await control.control_cases(ctx, case_ids)

    swept = await sweep(ctx, started, ask, control_cases, page_size=page_size, progress=progress)
    await finish(ctx, started.run_id, swept, started.shard)
    return swept
