"""The sweep's pages (clerk/sweeping.py): the next page is asked while a page's answers are recorded, and a
page's cases are controlled while the next page is asked, one page's control at a time and in page order;
when asking fails, the page still being controlled stops with the sweep and the asking error is the one
raised. Real paging and case book (SQLite and PostgreSQL); the
registries and the control step are stand-ins that record when they run."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk import querying, sweeping
from clerk.casebook.casefile import read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from clerk.context import Context
from clerk.control import Counts
from clerk.store import collector
from connectors.simulator.synthetic import sample_case_rows
from models.tables import CaseDebtor

TODAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
PAGE = 20
WAIT_S = 10  # a stand-in waits this long for what must happen meanwhile before the test fails


def case_book(sessions: sessionmaker[Session], tmp_path: Path) -> dict[int, int]:
    """60 cases imported; each debtor's case (the first, for a debtor of several)."""
    path = tmp_path / "cases.csv"
    write_case_file(path, sample_case_rows(seed=3, cases=60, today=TODAY))
    rows, _ = read_case_file(path, max_bytes=10**7, today=TODAY)
    with sessions.begin() as session:
        import_cases(session, rows, actor="user:tester")
    with sessions() as session:
        links = session.execute(select(CaseDebtor.debtor_id, CaseDebtor.case_id).order_by(CaseDebtor.case_id))
        case_of: dict[int, int] = {}
        for debtor_id, case_id in links:
            case_of.setdefault(debtor_id, case_id)
        return case_of


async def sweep(
    sessions: sessionmaker[Session], ask: sweeping.Ask, control: sweeping.Control
) -> sweeping.Swept:
    ctx = Context(sessions, actor="user:tester").at(NOW)
    started = await asyncio.to_thread(sweeping.start, ctx, "sweep (test)", None, querying.Schedule())
    return await sweeping.sweep(ctx, started, ask, control, page_size=PAGE)


def test_the_next_page_is_asked_while_a_page_is_answered_and_controlled_one_page_at_a_time_in_order(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A page's asking (its requests and the recording of its answers) is not done before the next page's
    has begun; no more than two pages are asked at once; a page is controlled after it is answered, while
    the next is asked, one page's control at a time, in page order."""
    case_of = case_book(sessions, tmp_path)
    pages = -(-len(case_of) // PAGE)
    assert pages >= 3
    events: list[tuple[str, int]] = []
    controlled: set[int] = set()
    most_asked = 0

    async def scenario() -> sweeping.Swept:
        asked = [asyncio.Event() for _ in range(pages + 1)]  # asked[k]: asking page k has begun
        asking = controlling = 0

        async def ask(debtor_ids: list[int]) -> list[querying.BatchResult]:
            nonlocal asking, most_asked
            page = len([e for e in events if e[0] == "ask"])
            events.append(("ask", page))
            asked[page].set()
            asking += 1
            most_asked = max(most_asked, asking)
            if page + 1 < pages:  # the next page is asked while this one is still being answered
                await asyncio.wait_for(asked[page + 1].wait(), WAIT_S)
            asking -= 1
            events.append(("answered", page))
            cases = {case_of[d] for d in debtor_ids}
            return [
                querying.BatchResult(
                    "bank", querying.Recorded(queried=len(debtor_ids), cases_with_new_hits=cases)
                )
            ]

        async def control(case_ids: list[int]) -> Counts:
            nonlocal controlling
            page = len([e for e in events if e[0] == "control"])
            events.append(("control", page))
            controlled.update(case_ids)
            controlling += 1
            assert controlling == 1, "two pages controlled at once"
            if page + 1 < pages:  # the next page is asked while this one is controlled
                await asyncio.wait_for(asked[page + 1].wait(), WAIT_S)
            controlling -= 1
            return Counts(cases=len(case_ids))

        return await sweep(sessions, ask, control)

    swept = asyncio.run(scenario())
    assert swept.debtors == len(case_of)
    assert controlled == set(case_of.values())  # a case with debtors on two pages is controlled on both
    assert [e for e in events if e[0] == "control"] == [("control", k) for k in range(pages)]
    assert most_asked == 2
    assert events[:2] == [("ask", 0), ("ask", 1)]
    for k in range(pages):
        assert events.index(("answered", k)) < events.index(("control", k))
        if k + 1 < pages:
            assert events.index(("ask", k + 1)) < events.index(("answered", k))


def test_when_asking_fails_the_page_being_controlled_stops_and_the_asking_error_is_raised(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    case_book(sessions, tmp_path)
    cancelled: list[int] = []

    async def scenario() -> None:
        control_started = asyncio.Event()

        async def ask(debtor_ids: list[int]) -> list[querying.BatchResult]:
            if control_started.is_set():
                raise RuntimeError("registry client broke")
            return [
                querying.BatchResult(
                    "bank", querying.Recorded(queried=len(debtor_ids), cases_with_new_hits={1})
                )
            ]

        async def control(case_ids: list[int]) -> Counts:
            control_started.set()
            try:
                await asyncio.sleep(WAIT_S)  # still controlling page 0 when asking page 1 fails
            except asyncio.CancelledError:
                cancelled.append(len(case_ids))
                raise
            raise AssertionError("the control outlived the sweep")

        with pytest.raises(RuntimeError, match="registry client broke"):
            await sweep(sessions, ask, control)

    asyncio.run(scenario())
    assert cancelled == [1]


def test_a_sweep_tunes_the_collector_while_it_runs_and_puts_it_back_even_when_it_fails(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """While a sweep runs, the objects alive at its start are set aside (gc.freeze) and the youngest
    generation is collected every `COLLECT_EVERY` containers; afterwards, the process's own settings are
    back and nothing stays frozen, whether the sweep ended or failed, and with two sweeps overlapping."""
    case_book(sessions, tmp_path)
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    seen: list[tuple[int, bool]] = []

    def look() -> None:  # the collector's youngest threshold, and whether objects are frozen
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))

    async def control(case_ids: list[int]) -> Counts:
        return Counts(cases=len(case_ids))

    async def overlapping() -> None:
        asking, go_on = asyncio.Event(), asyncio.Event()

        async def ask(debtor_ids: list[int]) -> list[querying.BatchResult]:
            look()
            asking.set()
            await asyncio.wait_for(go_on.wait(), WAIT_S)  # until the other sweep has failed
            return [querying.BatchResult("bank", querying.Recorded(queried=len(debtor_ids)))]

        async def ask_and_fail(debtor_ids: list[int]) -> list[querying.BatchResult]:
            look()
            raise RuntimeError("registry client broke")

        one = asyncio.create_task(sweep(sessions, ask, control))
        await asyncio.wait_for(asking.wait(), WAIT_S)
        with pytest.raises(RuntimeError, match="registry client broke"):
            await sweep(sessions, ask_and_fail, control)
        look()  # the first sweep still runs
        go_on.set()
        await one

    asyncio.run(overlapping())
    assert len(seen) >= 4 and all(seen_ == (collector.COLLECT_EVERY, True) for seen_ in seen), seen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
