"""Hostile registries (issue 25, defects 1, 5, 7, 8): simulators that get their answers wrong on purpose
(`connectors.simulator.faults.Hostile`), over real HTTP, on SQLite and PostgreSQL, without Prefect. Each test
failed on the code before the fix; under every hostile mode the cap holds at the simulators' own ledgers."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying, sweeping
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file
from clerk.casebook.intake import import_cases
from connectors.loader import build
from connectors.simulator.faults import FaultPlan, Hostile
from models.supervision import bureau_today
from models.tables import Asset, AuditEvent, Case, ControlMeasure, Notification, Query, Registry
from tests.fakes import context_for
from tests.world import World, served_world

NOW = dt.datetime.now(dt.UTC)
ACTOR = "flow-run:hostile"
ALLOWED = ["bank-json", "real-estate-xml", "vehicle-json"]
BANKS = ("bank-a", "bank-b")


@pytest.fixture
def world(sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[tuple[World, dict[str, int]]]:
    with served_world(tmp_path, debtors=40, seed=25, now=NOW, timeout_s=2.0) as served:
        rows, _ = read_case_file(served.case_file, max_bytes=10**8, today=NOW.date())
        with sessions.begin() as session:
            import_cases(session, rows, actor=ACTOR)
            registry_ids = querying.ensure_registries(session, served.configs)
        yield served, registry_ids


def sweep(
    sessions: sessionmaker[Session], world: World, ids: dict[str, int], now: dt.datetime = NOW
) -> sweeping.Swept:
    async def run() -> sweeping.Swept:
        connectors = build(world.configs, ALLOWED)
        try:
            ctx = context_for(sessions, connectors, world.configs, at=now, actor=ACTOR)
            return await sweeping.sweep_due(ctx, querying.Schedule())
        finally:
            await asyncio.gather(*(c.aclose() for c in connectors.values()))

    return asyncio.run(run())


def resolve(sessions: sessionmaker[Session], world: World) -> control.Counts:
    async def run() -> control.Counts:
        connectors = build(world.configs, ALLOWED)
        try:
            ctx = context_for(sessions, connectors, world.configs, actor=ACTOR)
            return await control.resolve_unconfirmed(ctx, dt.datetime.now(dt.UTC))
        finally:
            await asyncio.gather(*(c.aclose() for c in connectors.values()))

    return asyncio.run(run())


def assert_cap_at_the_ledgers(sessions: sessionmaker[Session], world: World) -> int:
    """No case holds more than it owes at the registries themselves; returns how many cases hold anything."""
    ledger = world.ledger_measures()
    today = bureau_today()
    holding = 0
    with sessions() as session:
        keys: dict[int, list[str]] = {}
        for m in session.scalars(select(ControlMeasure)):
            keys.setdefault(m.case_id, []).append(m.idempotency_key)
        for case in session.scalars(select(Case)):
            held = sum(
                getattr(ledger.get(k), "held_fen", 0) or 0
                for k in keys.get(case.id, [])
                if getattr(ledger.get(k), "status", "") == "effective"
            )
            assert held <= cases.owed(case, today).remaining, case.case_number
            holding += held > 0
    return holding


# --- 1: amounts and references checked -------------------------------------------------------------------


def test_a_bank_that_freezes_ten_times_the_amount_is_flagged_and_its_excess_lifted_in_the_same_run(
    sessions: sessionmaker[Session], world: tuple[World, dict[str, int]]
) -> None:
    served, ids = world
    for code in BANKS:
        served.simulators[code].hostile = Hostile(over_freeze=10)
    swept = sweep(sessions, served, ids)
    assert swept.control.excess_released > 0
    assert assert_cap_at_the_ledgers(sessions, served) > 0
    with sessions() as session:
        ours = {m.idempotency_key: m for m in session.scalars(select(ControlMeasure))}
    for key, m in served.ledger_measures().items():
        if m.requested_fen is not None and m.status == "effective":  # type: ignore[attr-defined]
            # the bank's claim is cut back to what we asked, and so is what it holds
            assert m.requested_fen <= ours[key].requested_amount_fen  # type: ignore[attr-defined]
            assert (m.held_fen or 0) <= ours[key].requested_amount_fen  # type: ignore[attr-defined]
    with sessions() as session:
        over = session.scalar(
            select(func.count())
            .select_from(ControlMeasure)
            .where(ControlMeasure.actual_amount_fen > ControlMeasure.requested_amount_fen)
        )
        assert over == 0, "never recorded as our measure's amount"
        flagged = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "measure.invalid_reply")
        ).all()
        assert flagged and all("it holds more than was asked" in e.payload for e in flagged)
        lifted = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "measure.excess_released")
        )
        assert lifted == swept.control.excess_released
        told = session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.template == "registry.invalid_reply", Notification.recipient == "judge")
        )
        assert told == len(flagged)


def test_status_answers_under_one_shared_freeze_number_are_not_recorded(
    sessions: sessionmaker[Session], world: tuple[World, dict[str, int]]
) -> None:
    served, ids = world
    for code in BANKS:  # every freeze is applied and its answer lost; the key's status then lies
        served.simulators[code].faults = FaultPlan(lost=1.0)
        served.simulators[code].hostile = Hostile(shared_reference=True)
    sweep(sessions, served, ids)
    resolve(sessions, served)  # asked again: still the same lie, flagged once
    assert_cap_at_the_ledgers(sessions, served)
    with sessions() as session:
        freezes = session.scalars(select(ControlMeasure).where(ControlMeasure.kind == "freeze")).all()
        assert freezes and all(m.status == "requested" for m in freezes), "nothing of the lie is recorded"
        assert not [m for m in freezes if (m.registry_reference or "").endswith("SHARED")]
        flags = session.scalars(select(AuditEvent).where(AuditEvent.action == "measure.invalid_reply")).all()
        assert len(flags) == len(freezes), "each measure flagged once, not at every status request"
    for code in BANKS:  # the bank is mended: the next collect records the truth, one number each
        served.simulators[code].faults = FaultPlan()
        served.simulators[code].hostile = Hostile()
    resolve(sessions, served)
    with sessions() as session:
        freezes = session.scalars(select(ControlMeasure).where(ControlMeasure.kind == "freeze")).all()
        assert all(m.status == "effective" for m in freezes)
        references = [(m.registry_id, m.registry_reference) for m in freezes]
        assert len(set(references)) == len(references)
    assert_cap_at_the_ledgers(sessions, served)


@pytest.mark.parametrize(
    ("hostile", "problem"),
    [
        (Hostile(names_other_account=True), "it names another account than the one asked"),
        (Hostile(names_other_case=True), "it names another case than the one asked"),
    ],
)
def test_answers_that_name_another_account_or_case_are_flagged_not_recorded(
    sessions: sessionmaker[Session], world: tuple[World, dict[str, int]], hostile: Hostile, problem: str
) -> None:
    """Issue 23: a bank that mixes up its answers (another account, another case) is the bank's error,
    never our measure: each flagged once for a person, nothing recorded, nothing frozen twice."""
    served, ids = world
    for code in BANKS:
        served.simulators[code].hostile = hostile
    swept = sweep(sessions, served, ids)
    resolve(sessions, served)  # the status answers name the other one too: not flagged again
    assert_cap_at_the_ledgers(sessions, served)
    with sessions() as session:
        freezes = session.scalars(select(ControlMeasure).where(ControlMeasure.kind == "freeze")).all()
        assert freezes and all(m.status == "requested" and m.actual_amount_fen is None for m in freezes)
        flags = session.scalars(select(AuditEvent).where(AuditEvent.action == "measure.invalid_reply")).all()
        assert len(flags) == len(freezes) and all(problem in e.payload for e in flags)
        told = session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.template == "registry.invalid_reply", Notification.recipient == "judge")
        )
        assert told == len(freezes)
    assert sum(swept.control.invalid_replies.values()) == len(freezes)
    keys = [m.idempotency_key for m in freezes]
    assert len(set(keys)) == len(keys) == len(served.ledger_measures().keys() & set(keys)), "each sent once"
    for code in BANKS:  # the bank is mended: the next collect records the truth
        served.simulators[code].hostile = Hostile()
    resolve(sessions, served)
    with sessions() as session:
        statuses = session.scalars(select(ControlMeasure.status).where(ControlMeasure.kind == "freeze")).all()
        assert set(statuses) <= {"effective", "queued"}


# --- 5: a registry that answers "later" for ever ----------------------------------------------------------


def test_a_registry_that_answers_later_for_ever_is_asked_again_after_24_hours(
    sessions: sessionmaker[Session], world: tuple[World, dict[str, int]]
) -> None:
    served, ids = world
    bank = served.simulators["bank-a"]
    bank.hostile = Hostile(never_answers=True)
    first = sweep(sessions, served, ids)
    assert first.tally.registries["bank-a"]["pending"] == first.debtors > 0
    asked = bank.requests_seen
    assert sweep(sessions, served, ids, NOW + dt.timedelta(hours=2)).debtors == 0  # within 24 h: it waits
    again = sweep(sessions, served, ids, NOW + dt.timedelta(hours=25))
    assert again.debtors == first.debtors, "every debtor the bank never answered is due again"
    assert bank.requests_seen > asked and again.tally.registries["bank-a"]["pending"] == again.debtors


# --- 7 and 8: contradictory replies, personal data in errors --------------------------------------------------


@pytest.mark.parametrize(
    ("code", "hostile", "error"),
    [
        ("bank-a", Hostile(duplicate_account=True), "one asset is listed twice"),
        ("realestate", Hostile(foreign_namespace=True), "holds an element other than <Property>"),
        ("bank-a", Hostile(echo_personal=True), "invalid reply: balance: the value"),
    ],
)
def test_replies_that_contradict_themselves_or_echo_personal_data_are_refused_cleanly(
    sessions: sessionmaker[Session],
    world: tuple[World, dict[str, int]],
    code: str,
    hostile: Hostile,
    error: str,
) -> None:
    served, ids = world
    served.simulators[code].hostile = hostile
    swept = sweep(sessions, served, ids)
    assert swept.tally.registries[code]["failed"] > 0
    with sessions() as session:
        registry_id = session.scalar(select(Registry.id).where(Registry.code == code))
        lookups = session.scalars(select(Query).where(Query.registry_id == registry_id)).all()
        assert lookups and all(q.status == "failed" for q in lookups), "nothing read as 'holds nothing'"
        errors = {q.error or "" for q in lookups}
        assert all(error in e for e in errors), errors
        for e in errors:
            assert not any(i in e for i in served.debtor_ids) and not any(n in e for n in served.debtor_names)
        assert (
            session.scalar(select(func.count()).select_from(Asset).where(Asset.registry_id == registry_id))
            == 0
        )
    # the other registries were asked and recorded as usual, and the cap holds
    assert swept.tally.total("hits") > 0
    assert_cap_at_the_ledgers(sessions, served)
