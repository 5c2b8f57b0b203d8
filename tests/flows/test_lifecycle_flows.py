"""The lifecycle flows under Prefect's test harness (a real server subprocess), against the simulators over
real HTTP: the deposit watch with a push feed, the judge's approval of a deduction through a real pause and
resume with input (and its timeout), renewal and release, node deadlines with events and SMS notices,
termination and resumption, and the daily report."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import StateType
from prefect.testing.utilities import prefect_test_harness
from rich.cells import cell_len
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from clerk import control, querying
from clerk.casebook import cases
from clerk.settings import get_settings
from clerk.store import db, tree
from cli import app
from flows.case_query import case_query
from flows.collect import collect
from flows.daily_report import daily_report
from flows.deadlines import deadlines
from flows.deduction import deduction
from flows.money import money_reconcile, money_statement
from flows.release import release
from flows.renewal import renewal
from flows.sweep import sweep
from flows.watch import watch
from models.status import REFUSED
from models.supervision import bureau_today
from models.tables import (
    Asset,
    AuditEvent,
    Case,
    ControlMeasure,
    Debtor,
    NodeNotice,
    Notification,
    Payment,
    Registry,
    Subaccount,
)
from models.values import format_yuan
from tests.flows.test_flows import artifacts_of
from tests.world import World, flow_world

NOW = dt.datetime.now(dt.UTC)
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", autouse=True)
def harness() -> Iterator[None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def world(clerk_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("CLERK_APPROVAL_POLL_S", "1")
    with flow_world(tmp_path, monkeypatch, debtors=80, seed=13, now=NOW, push_feed=True) as served:
        state = asyncio.run(sweep(return_state=True))
        assert state.is_completed(), state.message
        yield served


def sessions():  # type: ignore[no-untyped-def]
    return db.session_factory(db.engine_for(get_settings().effective_database_url))


def short_case_account() -> tuple[str, str, str]:
    """(case number, bank code, account) of an active case short of what it owes, with an account that no
    other authority holds."""
    today = bureau_today()
    with sessions()() as session:
        for case in session.scalars(select(Case).where(Case.status == "active").order_by(Case.id)):
            claims = control.claims(session, case.id)
            if claims >= cases.owed(case, today).remaining:
                continue
            debtors = querying.debtor_ids_of_case(session, case.id)
            for asset, code in session.execute(
                select(Asset, Registry.code)
                .join(Registry, Registry.id == Asset.registry_id)
                .where(Asset.kind == "deposit", Asset.debtor_id.in_(debtors))
            ):
                if not asset.other_measures:
                    return case.case_number, code, asset.identifier
    raise AssertionError("no case short of what it owes with a plain account")


def frozen_on(world: World, code: str, account: str) -> int:
    ledger = world.simulators[code].ledger
    return sum(
        m.held_fen or 0
        for m in ledger.measures.values()
        if m.identifier == account and m.status == "effective"
    )


def sms_messages(world: World, template: str | None = None) -> list[dict[str, Any]]:
    return [m for m in world.sms.messages.values() if template is None or m["template"] == template]


async def prefect_texts(run_id: Any) -> list[str]:
    """What Prefect keeps of a run: its name, parameters and state, its logs, artifacts and inputs."""
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        texts = [f"{run.name} {run.parameters} {run.state.message if run.state else ''}"]
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        texts += [log.message for log in logs]
        artifacts = await client.read_artifacts()
        texts += [f"{a.key} {a.description} {a.data}" for a in artifacts]
        inputs = await client.filter_flow_run_input(run_id, key_prefix="", limit=100, exclude_keys=set())
        texts += [f"{i.key} {i.value}" for i in inputs]
    return texts


async def paused_run(name: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    async with get_client() as client:
        while time.monotonic() < deadline:
            for run in await client.read_flow_runs(limit=50):
                if (
                    run.state
                    and run.state.type is StateType.PAUSED
                    and run.parameters.get("case_number") == name
                ):
                    return run
            await asyncio.sleep(0.5)
    raise AssertionError("the deduction never paused for the judge")


def test_a_watch_run_that_finds_nothing_ends_quietly(world: World) -> None:
    state = asyncio.run(watch(listen_s=1, poll_s=600, return_state=True))
    assert state.is_completed(), state.message
    assert (state.message or "").startswith("nothing new in 1 s:")
    assert asyncio.run(artifacts_of(state.state_details.flow_run_id)) == {}, "no artifacts for a quiet run"


def test_watch_freezes_a_deposit_from_the_push_feed(world: World) -> None:
    number, code, account = short_case_account()
    before = frozen_on(world, code, account)
    latency: list[float] = []

    async def scenario() -> Any:
        flow = asyncio.create_task(watch(listen_s=12, poll_s=600, return_state=True))
        await asyncio.sleep(3)  # the watch is listening
        landed = time.monotonic()
        base = {c.code: c.base_url for c in world.configs}[code]
        httpx.post(
            f"{base}/_sim/deposits", json={"account_no": account, "amount_fen": 3_000_00}
        ).raise_for_status()
        while frozen_on(world, code, account) == before and time.monotonic() - landed < 9:
            await asyncio.sleep(0.05)
        latency.append(time.monotonic() - landed)
        return await flow

    state = asyncio.run(scenario())
    assert state.is_completed(), state.message
    assert frozen_on(world, code, account) > before, "the deposit was frozen while the watch listened"
    with sessions()() as session:
        arrived = session.scalars(
            select(AuditEvent.payload).where(
                AuditEvent.action == "deposit.arrived", AuditEvent.case_number == number
            )
        ).all()
        assert arrived and account not in arrived[0]  # masked
        assert tree.verify(session).ok
    assert latency[0] < 9


def test_money_reaches_a_cases_sub_account_and_the_bank_and_the_journal_are_reconciled(world: World) -> None:
    opened = asyncio.run(money_statement(return_state=True))
    assert opened.is_completed() and (opened.message or "").startswith("0 line(s)"), opened.message
    with sessions()() as session:
        number, sub = session.execute(
            select(Case.case_number, Subaccount.number).join(Subaccount).order_by(Case.id)
        ).first()  # type: ignore[misc]
        owed = cases.owed(cases.get_case(session, number), bureau_today()).remaining
    paid = owed // 2  # more than the fee and costs: the applicant gets some, and is told
    world.court_bank.credit(paid, sub)
    read = asyncio.run(money_statement(return_state=True))
    assert "1 transfer(s)" in (read.message or ""), read.message
    told = [m for m in sms_messages(world, "money.arrived") if m["case_no"] == number]
    assert [(m["to"], m["params"]["amount_fen"] > 0) for m in told] == [("applicant", True)], told
    agreed = asyncio.run(money_reconcile(return_state=True))
    assert agreed.is_completed() and "agree to the fen" in (agreed.message or ""), agreed.message
    world.court_bank.books.off[sub] = 1  # the bank's error, one fen
    differs = asyncio.run(money_reconcile(return_state=True))
    assert differs.is_completed() and "1 account(s) differ" in (differs.message or ""), differs.message
    shown = asyncio.run(artifacts_of(differs.state_details.flow_run_id))
    assert "money-unreconciled" in shown
    assert sub not in str(shown["money-unreconciled"].data), "the account is masked"
    warned = [m for m in sms_messages(world, "money.unreconciled") if m["case_no"] == number]
    assert [m["to"] for m in warned] == ["judge"] and sub not in str(warned), "its judge told, masked"
    world.court_bank.credit(3_00, None)  # nobody said for which case
    asyncio.run(money_statement(return_state=True))
    daily = asyncio.run(daily_report(day=bureau_today().isoformat(), return_state=True))
    report = str(asyncio.run(artifacts_of(daily.state_details.flow_run_id))["daily-report"].data)  # type: ignore[attr-defined]
    assert f"placed with its cases: 1 credit(s), {format_yuan(paid)} yuan" in report, report
    assert "unidentified money (不明款) waiting: 1 credit(s), 3.00 yuan" in report
    assert "**1 account(s) differ" in report, "the last reconciliation, for a person"
    sheet = CliRunner().invoke(app, ["cases", "show", number])
    assert sheet.exit_code == 0 and "case money received (案款), sub-account ****" in sheet.stdout
    assert sub not in sheet.stdout


def test_a_statement_run_that_listens_places_money_booked_while_it_runs(world: World) -> None:
    asyncio.run(money_statement(return_state=True))  # the sub-accounts
    with sessions()() as session:
        number, sub = session.execute(
            select(Case.case_number, Subaccount.number).join(Subaccount).order_by(Case.id)
        ).first()  # type: ignore[misc]
    booking = threading.Timer(1.0, lambda: world.court_bank.credit(1_00, sub))
    booking.start()
    try:
        state = asyncio.run(money_statement(listen_s=3, return_state=True))
    finally:
        booking.cancel()
    assert state.is_completed() and "1 transfer(s)" in (state.message or ""), state.message
    with sessions()() as session:
        case = cases.get_case(session, number)
        assert [p.amount_fen for p in case.payments if p.source == "transfer"] == [1_00]


def test_a_judge_approves_a_deduction_through_pause_and_resume(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))  # `clerk approve` reads the env
    with sessions()() as session:
        row = session.execute(
            select(Case.case_number, Case.judge)
            .join(ControlMeasure, ControlMeasure.case_id == Case.id)
            .where(ControlMeasure.status == "effective", ControlMeasure.actual_amount_fen > 100_00)
            .order_by(Case.id)
        ).first()
    assert row is not None
    number, judge = row
    runner = CliRunner()

    async def scenario() -> tuple[Any, list[Any], str, dict[str, Any], str]:
        flow = asyncio.create_task(deduction(case_number=number, requested_by=judge, return_state=True))
        run = await paused_run(number)
        async with get_client() as client:  # what the UI shows above the Resume form, and the form
            shown = await client.read_flow_run_input(run.id, "paused-deduction-decision-description")
            schema = json.loads(await client.read_flow_run_input(run.id, "paused-deduction-decision-schema"))
        assert (
            f"Deduction proposed for {number}" in shown and "| registry | account | amount (yuan) |" in shown
        )

        def clerk(*args: str) -> Any:
            return asyncio.to_thread(runner.invoke, app, ["approve", *args, "--wait", "30"])

        results = [
            await clerk("not-a-run", "--judge", judge),
            await clerk(str(run.id), "--judge", judge, "--reject"),
            # more than proposed: refused by the command, before it reaches the run; the run still waits
            await clerk(str(run.id), "--judge", judge, "--amount", "999999999"),
            # someone who may not decide for this case: refused (audited), shown, and the run waits again
            await clerk(str(run.id), "--judge", "陌生人"),
            # the judge, without proof: a code goes to the judge's phone, and the run waits again
            await clerk(str(run.id), "--judge", judge, "--amount", "100.00"),
        ]
        again = await paused_run(number)
        assert again.id == run.id
        async with get_client() as client:
            shown_again = await client.read_flow_run_input(run.id, "paused-deduction-decision-2-description")
        [code] = world.sms.codes(number)  # what the judge reads on the phone
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        results.append(await clerk(str(run.id), "--judge", judge, "--amount", "100.01", "--code", code))
        results.append(await clerk(str(run.id), "--judge", judge, "--amount", "100.00", "--code", wrong))
        results.append(await clerk(str(run.id), "--judge", judge, "--amount", "100.00", "--code", code))
        return await flow, results, shown_again, schema, code

    state, results, shown_again, schema, code = asyncio.run(scenario())
    bad_id, no_reason, too_much, stranger, unproven, other_amount, wrong, approved = results
    assert bad_id.exit_code == 2 and "is not a flow run id" in bad_id.output
    assert no_reason.exit_code == 2 and "a rejection needs a reason" in no_reason.output
    assert too_much.exit_code == 2, too_much.output
    assert re.search(
        r"error: --amount: 999,999,999\.00 yuan is more than the [0-9,.]+ yuan proposed", too_much.stderr
    )
    assert stranger.exit_code == 1, stranger.output
    refusal = "judge: 陌生人 may not decide for this case"
    assert f"refused: {refusal}" in " ".join(stranger.stderr.split())
    assert "the run waits for a new decision" in " ".join(stranger.stderr.split())
    assert unproven.exit_code == 1 and "a code to approve 100.00 yuan was sent" in " ".join(
        unproven.stderr.split()
    )
    assert f"**The last decision was refused: {refusal}" in shown_again
    assert other_amount.exit_code == 1 and "another amount (approve 100.00 yuan)" in " ".join(
        other_amount.stderr.split()
    )
    assert wrong.exit_code == 1 and "refused: wrong code" in wrong.stderr
    assert approved.exit_code == 0, approved.output
    assert "Completed: " in approved.stdout and "100.00 of 100.00 yuan approved moved" in " ".join(
        approved.stdout.split()
    )
    assert state.is_completed(), state.message
    assert "100.00 of 100.00 yuan approved moved" in (state.message or "")
    # The form: a required choice, a required judge, the amount a number up to the proposal, the code.
    fields = schema["properties"]
    assert set(schema["required"]) == {"decision", "judge"} and fields["decision"]["enum"] == [
        "approve",
        "reject",
    ]
    amount = fields["amount_yuan"]
    assert amount["type"] == "number" and amount["maximum"] == amount["default"] > 0, amount
    assert fields["reason"]["type"] == "string", "a plain text field, not a type toggle"
    assert fields["code"]["type"] == "string"
    assert all(fields[f].get("description") for f in ("decision", "judge", "amount_yuan", "reason", "code"))
    found = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    result = str(found["deduction-result"].data)  # type: ignore[attr-defined]
    assert f"Approved by {judge}" in result and "**100.00 yuan moved**" in result and "| moved |" in result
    # The code is nowhere but on the phone: not in the run's logs, artifacts, parameters or inputs, nor on
    # the audit trail.
    texts = asyncio.run(prefect_texts(state.state_details.flow_run_id))
    with sessions()() as session:
        texts += list(session.scalars(select(AuditEvent.payload)))
        texts += [str(n.params) for n in session.scalars(select(Notification))]
    assert len(texts) > 20
    assert [t for t in texts if re.search(rf"(?<![0-9a-f]){code}(?![0-9a-f])", t)] == []
    with sessions()() as session:
        decision = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "deduction.approved", AuditEvent.case_number == number
            )
        ).one()
        assert f'"judge": "{judge}"' in decision.payload and '"approved_fen": 10000' in decision.payload
        refusal = session.scalars(
            select(AuditEvent.payload).where(
                AuditEvent.action == "access.refused", AuditEvent.case_number == number
            )
        ).first()
        assert refusal is not None and '"who": "陌生人"' in refusal and '"action": "decide"' in refusal
        assert '"proof": {"by": "code", "code": ' in decision.payload
        paid = session.scalar(
            select(func.sum(Payment.amount_fen))
            .join(Case)
            .where(Case.case_number == number, Payment.source == "deduction")
        )
        assert paid == 100_00
    assert sum(amount for sim in world.simulators.values() for _, amount in sim.ledger.deducted) == 100_00
    assert sms_messages(world, "deduction.awaiting")


def test_an_unanswered_deduction_reminds_the_judge_then_times_out(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLERK_APPROVAL_TIMEOUT_S", "10")
    monkeypatch.setenv("CLERK_APPROVAL_REMINDER_S", "5")
    get_settings.cache_clear()
    with sessions()() as session:
        row = session.execute(
            select(Case.case_number, Case.judge)
            .join(ControlMeasure, ControlMeasure.case_id == Case.id)
            .where(ControlMeasure.status == "effective", ControlMeasure.actual_amount_fen > 0)
        ).first()
    assert row is not None
    number, judge = row
    state = asyncio.run(deduction(case_number=number, requested_by=judge, return_state=True))
    assert state.type is StateType.CANCELLED, state
    assert "no decision within 10 s; nothing moved" in (state.message or "")
    assert [m for m in sms_messages(world, "deduction.reminder") if m["case_no"] == number]
    with sessions()() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "deduction.timed_out")
            )
            == 1
        )
    assert all(not sim.ledger.deducted for sim in world.simulators.values())


def test_renewal_renews_what_is_due_and_alerts_what_lapsed(world: World) -> None:
    today = bureau_today()
    with sessions().begin() as session:
        due, lapsed = session.scalars(
            select(ControlMeasure)
            .where(ControlMeasure.status == "effective")
            .order_by(ControlMeasure.id)
            .limit(2)
        ).all()
        due.expires_on = today + dt.timedelta(days=10)  # inside the 30-day lead
        # A measure taken a year ago that lapsed yesterday (the registry dated it; the start comes first).
        lapsed.started_on, lapsed.expires_on = today - dt.timedelta(days=366), today - dt.timedelta(days=1)
        due_id, lapsed_id, due_key = due.id, lapsed.id, due.idempotency_key
    state = asyncio.run(renewal(return_state=True))
    assert state.is_completed(), state.message
    assert state.message == "1 of 1 measure(s) renewed; 1 lapsed (alerted)"
    ledger = world.ledger_measures()
    with sessions()() as session:
        renewed = session.get(ControlMeasure, due_id)
        assert renewed is not None and renewed.expires_on == ledger[due_key].end  # type: ignore[attr-defined]
        assert renewed.expires_on > today + dt.timedelta(days=300)
        gone = session.get(ControlMeasure, lapsed_id)
        assert gone is not None and gone.status == "expired"
        actions = set(session.scalars(select(AuditEvent.action)))
        assert {"measure.renewed", "measure.expired"} <= actions
    assert sms_messages(world, "measure.lapsed")
    again = asyncio.run(renewal(return_state=True))
    assert again.message == "0 of 0 measure(s) renewed; 0 lapsed (alerted)"


def test_release_lifts_a_paid_case_and_the_excess_after_a_part_payment(world: World) -> None:
    today = bureau_today()
    with sessions()() as session:
        frozen = session.execute(
            select(Case.case_number, func.sum(ControlMeasure.actual_amount_fen))
            .join(ControlMeasure, ControlMeasure.case_id == Case.id)
            .where(ControlMeasure.status == "effective", ControlMeasure.kind == "freeze")
            .group_by(Case.case_number)
            .having(func.sum(ControlMeasure.actual_amount_fen) > 1_000_00)
            .order_by(Case.case_number)
        ).all()
        owed = {n: cases.owed(cases.get_case(session, n), today).remaining for n, _ in frozen[:2]}
        judges = {n: cases.get_case(session, n).judge for n, _ in frozen[:2]}
    (paid_off, _), (part_paid, part_frozen) = frozen[0], frozen[1]
    runner = CliRunner()
    pay_all = runner.invoke(
        app,
        [
            "cases",
            "pay",
            paid_off,
            f"{owed[paid_off] / 100:.2f}",
            "--on",
            today.isoformat(),
            "--actor",
            judges[paid_off],
        ],
    )
    assert pay_all.exit_code == 0, pay_all.output
    # Pay so much of the other that what is frozen now exceeds what it owes by 500 yuan.
    part = owed[part_paid] - part_frozen + 500_00
    pay_part = runner.invoke(
        app,
        [
            "cases",
            "pay",
            part_paid,
            f"{part / 100:.2f}",
            "--on",
            today.isoformat(),
            "--actor",
            judges[part_paid],
        ],
    )
    assert pay_part.exit_code == 0, pay_part.output
    state = asyncio.run(release(return_state=True))
    assert state.is_completed(), state.message
    ledger = world.ledger_measures()
    with sessions()() as session:
        for number in (paid_off, part_paid):
            case = cases.get_case(session, number)
            keys = session.scalars(
                select(ControlMeasure.idempotency_key).where(ControlMeasure.case_id == case.id)
            )
            held = sum(getattr(ledger[k], "held_fen", 0) or 0 for k in keys)
            remaining = cases.owed(case, today).remaining
            if number == paid_off:
                assert case.status == "paid" and held == 0
            else:
                assert held == remaining, (held, remaining)
        actions = set(session.scalars(select(AuditEvent.action)))
        assert {"case.paid", "measure.released"} <= actions
    assert asyncio.run(release(return_state=True)).message == "0 of 0 release(s) done for 0 case(s)"


def test_deadlines_triage_warn_alert_once_and_notify(world: World) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    with sessions().begin() as session:
        case = session.scalars(select(Case).where(Case.status == "active").order_by(Case.id)).first()
        assert case is not None
        number = case.case_number
        debtors = querying.debtor_ids_of_case(session, case.id)
        session.execute(update(Debtor).where(Debtor.id.in_(debtors)).values(last_queried_at=None))
        session.execute(
            update(Case).where(Case.id == case.id).values(created_at=long_ago, filed_on=long_ago.date())
        )
    state = asyncio.run(deadlines(return_state=True))
    assert state.is_completed(), state.message
    with sessions()() as session:
        tracks = set(session.scalars(select(Case.track).where(Case.track.is_not(None))))
        assert tracks and tracks <= {"fast", "simple", "normal"}
        notices = session.execute(
            select(NodeNotice.node, NodeNotice.level).join(Case).where(Case.case_number == number)
        ).all()
        assert ("query", "overdue") in notices
        sent = session.scalar(
            select(func.count()).select_from(Notification).where(Notification.status == "sent")
        )
    assert [
        m
        for m in sms_messages(world, "node.overdue")
        if m["case_no"] == number and m["params"]["node"] == "query"
    ]
    again = asyncio.run(deadlines(return_state=True))
    assert "0 node notice(s)" in (again.message or "")
    with sessions()() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Notification).where(Notification.status == "sent")
            )
            == sent
        )

    async def overdue_event() -> bool:
        """Events reach the server's database in batches: look for a while."""
        async with get_client() as client:
            for _ in range(60):
                response = await client._client.post(
                    "/events/filter", json={"filter": {"event": {"prefix": ["clerk.node."]}}, "limit": 50}
                )
                response.raise_for_status()
                found = response.json()["events"]
                if any(
                    e["event"] == "clerk.node.overdue" and e["resource"]["prefect.resource.name"] == number
                    for e in found
                ):
                    return True
                await asyncio.sleep(0.5)
        print(response.status_code, str(found)[:2000])
        return False

    assert asyncio.run(overdue_event()), "the alert reached Prefect as an event (automations can act on it)"


def test_a_terminated_case_with_a_new_hit_resumes_as_a_new_case(world: World) -> None:
    with sessions()() as session:
        case = session.scalars(select(Case).where(Case.status == "active").order_by(Case.id.desc())).first()
        assert case is not None
        number, court, judge = case.case_number, case.court_code, case.judge
        debtor = session.get(Debtor, querying.debtor_ids_of_case(session, case.id)[0])
        assert debtor is not None
        owner = debtor.id_number
    runner = CliRunner()
    no_reason = runner.invoke(app, ["cases", "terminate", number, "--reason", " ", "--actor", judge])
    assert no_reason.exit_code == 2 and "needs a reason" in no_reason.output
    done = runner.invoke(app, ["cases", "terminate", number, "--reason", "无可供执行财产", "--actor", judge])
    assert done.exit_code == 0, done.output
    bank = next(sim for sim in world.simulators.values() if sim.kind == "bank")
    bank.add_account(owner, "6222999900000000001", 80_000_00)  # type: ignore[attr-defined]
    with sessions().begin() as session:  # six months on: due for the re-query
        session.execute(
            update(Debtor)
            .where(Debtor.id_number == owner)
            .values(last_queried_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=200))
        )
    state = asyncio.run(sweep(return_state=True))
    assert state.is_completed(), state.message
    with sessions()() as session:
        original = cases.get_case(session, number)
        assert original.status == "resumed"
        resumed = session.scalars(select(Case).where(Case.resumed_from_id == original.id)).one()
        assert (
            resumed.case_number.startswith(f"（{bureau_today().year}）{court}执恢")
            and resumed.status == "active"
        )
        measures = session.scalars(select(ControlMeasure).where(ControlMeasure.case_id == resumed.id)).all()
        assert any(m.status == "effective" for m in measures)
        actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.case_number == number)))
        assert {"case.terminated", "case.resumed"} <= actions
    told = {m["to"] for m in sms_messages(world, "case.resumed") if m["params"]["original"] == number}
    assert told == {"judge", "applicant"}
    assert asyncio.run(collect(return_state=True)).is_completed()


def test_daily_report_per_court_and_judge(world: World, tmp_path: Path) -> None:
    today = bureau_today()
    state = asyncio.run(daily_report(day=today.isoformat(), return_state=True))
    assert state.is_completed(), state.message
    csv_file = get_settings().data_dir / "reports" / f"daily-{today.isoformat()}.csv"
    text = csv_file.read_text(encoding="utf-8-sig")
    assert text.startswith("court,judge,queries,hits,frozen")
    rows = text.strip().splitlines()[1:]
    assert rows and sum(int(r.split(",")[3]) for r in rows) > 0  # hits
    header = text.splitlines()[0].split(",")
    untriaged = header.index("active_untriaged")
    assert sum(int(r.split(",")[untriaged]) for r in rows) > 0  # the caseload beside the day's work
    report = str(asyncio.run(artifacts_of(state.state_details.flow_run_id))["daily-report"].data)  # type: ignore[attr-defined]
    with sessions()() as session:
        head = tree.latest_head(session)
    assert head is not None and f"`{head.short}`, signed {head.signed_at}" in report, "the day's signed head"
    bad = asyncio.run(daily_report(day="2026-13-01", return_state=True))
    assert bad.name == REFUSED and bad.message == "day: '2026-13-01' is not a date (YYYY-MM-DD)"
    shown = CliRunner().invoke(
        app, ["report", "daily", "--day", today.isoformat(), "--csv", str(tmp_path / "r.csv")]
    )
    assert shown.exit_code == 0, shown.output
    assert "Daily report" in shown.stdout and (tmp_path / "r.csv").exists()
    tables = [line for line in shown.stdout.splitlines() if not line.startswith("written:")]
    assert "yuan frozen" in shown.stdout and all(cell_len(line) <= 80 for line in tables)
    yesterday = CliRunner().invoke(app, ["report", "daily"])
    assert yesterday.exit_code == 0 and "the report for yesterday" in yesterday.stderr


# --- personal data and secrets ------------------------------------------------------------------------

SECRET = "s3cr3t-registry-credential-9f27"


def leaks(text: str, world: World, accounts: set[str]) -> list[str]:
    """What of the credential, the debtors' IDs and names and their account numbers `text` shows in full."""
    found = [SECRET] if SECRET in text else []
    found += [i for i in world.debtor_ids if i in text]
    found += [n for n in world.debtor_names if len(n) >= 2 and n in text]
    found += [a for a in accounts if a in text]
    return found


def test_nothing_personal_or_secret_reaches_logs_artifacts_results_or_the_trail(
    clerk_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from connectors.simulator.faults import FaultPlan

    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    faults = FaultPlan(
        seed=3, error=0.1, throttle=0.05, garbage=0.05, later=0.05, lost=0.05, retry_after_s=0.01
    )
    with flow_world(
        tmp_path, monkeypatch, debtors=60, seed=29, now=NOW, faults=faults, credential=SECRET, push_feed=True
    ) as world:
        accounts = {h for sim in world.simulators.values() for h in sim.ledger.holdings}
        assert "CLERK_REGISTRIES" in os.environ and SECRET in os.environ["CLERK_REGISTRIES"]
        states = [asyncio.run(sweep(return_state=True))]
        states.append(asyncio.run(collect(return_state=True)))
        states.append(asyncio.run(watch(listen_s=2, poll_s=1, return_state=True)))
        states.append(asyncio.run(deadlines(return_state=True)))
        with sessions()() as session:
            number, judge = session.execute(select(Case.case_number, Case.judge).order_by(Case.id)).first()  # type: ignore[misc]
        states.append(asyncio.run(case_query(case_number=number, requested_by=judge, return_state=True)))
        assert all(not s.is_crashed() for s in states)

        async def from_prefect() -> list[str]:
            texts: list[str] = []
            async with get_client() as client:
                runs = await client.read_flow_runs(limit=200)
                for run in runs:
                    texts.append(f"{run.name} {run.parameters} {run.state.message if run.state else ''}")
                    for offset in range(0, 100_000, 200):
                        page = await client.read_logs(
                            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                            limit=200,
                            offset=offset,
                        )
                        texts += [log.message for log in page]
                        if len(page) < 200:
                            break
                artifacts = await client.read_artifacts(limit=200)
                texts += [f"{a.key} {a.description} {a.data}" for a in artifacts]
            return texts

        prefect_texts = asyncio.run(from_prefect())
        log_lines = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
        results = [str(s.data) + (s.message or "") for s in states]
        with sessions()() as session:
            trail = list(session.scalars(select(AuditEvent.payload)))
            notices = [str(n.params) for n in session.scalars(select(Notification))]
        stored = [
            f.read_text(errors="replace")
            for f in Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser().rglob("storage/*")
            if f.is_file()
        ]
        corpus = {"prefect": prefect_texts, "logs": log_lines, "results": results, "audit": trail,
                  "notices": notices, "stored results": stored}  # fmt: skip
        assert len(prefect_texts) > 20 and len(log_lines) > 50 and len(trail) > 50
        assert any("HTTP Request" in line for line in log_lines), "httpx logged at DEBUG/INFO"
        for where, texts in corpus.items():
            for text in texts:
                assert not leaks(text, world, accounts), (where, leaks(text, world, accounts), text[:300])
        # The scan itself can see a leak.
        some_id, some_account = next(iter(world.debtor_ids)), next(iter(accounts))
        assert leaks(f"x {some_id} {some_account} {SECRET}", world, accounts) == [
            SECRET,
            some_id,
            some_account,
        ]
