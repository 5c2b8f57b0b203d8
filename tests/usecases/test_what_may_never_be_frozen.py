"""What may never be frozen (查扣冻规定 art. 3), planned and sent on the database (SQLite and PostgreSQL)
with in-process registries over the simulators' ledgers: a person's living allowance kept across all of the
person's deposits, protected accounts left alone, a judge's override audited. The banks' ledgers are the
referee."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control, querying
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from clerk.store import db, tree
from connectors.base import RegistryKind
from connectors.config import RegistryConfig
from connectors.simulator.ledger import Holding, Ledger
from connectors.simulator.synthetic import credit_code, resident_id
from models.exemptions import Exemptions, LivingStandard
from models.rules import AssetKind
from models.tables import AuditEvent, Case
from models.values import CaseNumber, InvalidValue
from tests.fakes import LedgerRegistry, context_for

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
ACTOR = "flow-run:test"
PERSON_CASE, FIRM_CASE = "(2026)豫0185执1号", "(2026)豫0185执2号"
EXEMPT = Exemptions((LivingStandard("豫", 700_00, dt.date(2025, 1, 1)),), 3, frozenset({"migrant_wage"}))
POLICY = control.Policy(exempt=EXEMPT)


def _row(
    number: str, kind: str, debtor_id: str, name: str, principal: str, dependants: str
) -> dict[str, str]:
    return {
        "case_number": number,
        "filed_on": "2026-03-01",
        "judge": "李法官",
        "applicant": "王五",
        "principal": principal,
        "judgment_interest": "",
        "costs": "",
        "performance_due_on": "2026-01-01",
        "debtor_kind": kind,
        "debtor_id": debtor_id,
        "debtor_name": name,
        "dependants": dependants,
    }


def book(
    sessions: sessionmaker[Session], tmp: Path, person_balances: list[int], dependants: str = ""
) -> dict[str, LedgerRegistry]:
    """Two banks; a person owing 500,000 yuan with deposits of `person_balances` spread over them, and a
    firm owing as much with one ordinary account and one migrant-workers' wage account."""
    rng = random.Random(3)
    person, firm = resident_id(rng, "410185"), credit_code(rng, "410185")
    banks = {
        code: LedgerRegistry(code, RegistryKind.BANK, Ledger(code, TODAY)) for code in ("bank-a", "bank-b")
    }
    ledgers = [b.ledger for b in banks.values()]
    for i, balance in enumerate(person_balances):
        ledgers[i % 2].add(Holding(f"62220000000000{i:05d}", person, AssetKind.DEPOSIT, balance))
    ledgers[0].add(Holding("62221111111111100001", firm, AssetKind.DEPOSIT, 80_000_00))
    ledgers[1].add(
        Holding("62221111111111100002", firm, AssetKind.DEPOSIT, 90_000_00, purpose="migrant_wage")
    )
    path = tmp / "cases.csv"
    write_case_file(
        path,
        [
            _row(PERSON_CASE, "person", person, "张三", "500000", dependants),
            _row(FIRM_CASE, "organisation", firm, "某某建筑公司", "500000", ""),
        ],
    )
    rows, _ = read_case_file(path, max_bytes=10**6, today=TODAY)
    with sessions.begin() as session:
        import_cases(session, rows, actor=ACTOR)
    return banks


def control_all(sessions: sessionmaker[Session], banks: dict[str, LedgerRegistry]) -> control.Counts:
    configs = [
        RegistryConfig(
            code=code,
            name=code,
            kind=RegistryKind.BANK,
            adapter="bank-json",
            base_url="http://127.0.0.1:9",
            credential=SecretStr("unused: the registries are in process"),
        )
        for code in banks
    ]
    ctx = context_for(sessions, banks, configs, at=TODAY, actor=ACTOR, policy=POLICY)

    async def go() -> control.Counts:
        with sessions() as session:
            debtor_ids = querying.due_page(session, NOW, querying.Schedule(), 0, 100)
        run_id = db.in_transaction(sessions, querying.start_run, "test")
        for code in banks:
            if debtor_ids:  # not due again the second time
                await querying.query_batch(ctx, code, run_id, debtor_ids)
        with sessions() as session:
            case_ids = list(session.scalars(select(Case.id).order_by(Case.id)))
        return await control.control_cases(ctx, case_ids)

    return asyncio.run(go())


def held(banks: dict[str, LedgerRegistry], case_number: str) -> list[int]:
    return [
        m.held_fen or 0
        for b in banks.values()
        for m in b.ledger.measures.values()
        if m.case_no == str(CaseNumber.parse(case_number)) and m.status == "effective"
    ]


def test_a_person_keeps_the_living_allowance_across_all_deposits(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    balances = [1_500_00, 900_00, 400_00]  # 2,800 yuan in all, over two banks; the allowance is 2,100
    banks = book(sessions, tmp_path, balances)
    counts = control_all(sessions, banks)
    frozen = sum(held(banks, PERSON_CASE))
    assert frozen == sum(balances) - 3 * 700_00, "all but 3 months of the standard, across the accounts"
    assert counts.effective >= 1
    with sessions() as session:
        sheet = control.case_sheet(session, PERSON_CASE, TODAY, POLICY)
    [kept] = [f for f in sheet.left_free if f.startswith("4101")]  # the person's masked ID, not an account
    assert kept.endswith(" 2,100.00 yuan: kept as the debtor's living allowance")


def test_dependants_in_the_case_file_widen_the_allowance(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    banks = book(sessions, tmp_path, [5_000_00, 4_000_00], dependants="2")
    control_all(sessions, banks)
    assert sum(held(banks, PERSON_CASE)) == 9_000_00 - 3 * 700_00 * 3, "the debtor and two dependants"


def test_a_protected_account_is_never_frozen_until_a_judge_overrides_with_a_reason(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    banks = book(sessions, tmp_path, [])
    control_all(sessions, banks)
    wage = [m for m in banks["bank-b"].ledger.measures.values() if m.identifier.endswith("00002")]
    assert wage == [], "the migrant workers' wage account is left alone"
    assert sum(held(banks, FIRM_CASE)) == 80_000_00, (
        "the ordinary account is frozen (an organisation keeps no allowance)"
    )
    with sessions() as session:
        sheet = control.case_sheet(session, FIRM_CASE, TODAY, POLICY)
    assert [f.rsplit(": ", 1)[1] for f in sheet.left_free] == ["the account's purpose is protected by law"]

    with sessions.begin() as session, pytest.raises(InvalidValue, match="reason"):
        cases.set_override(session, FIRM_CASE, "protected", on=True, actor="李法官", reason=" ")
    with sessions.begin() as session:
        cases.set_override(session, FIRM_CASE, "protected", on=True, actor="李法官", reason="工资已另行支付")
    control_all(sessions, banks)
    assert sum(held(banks, FIRM_CASE)) == 170_000_00, "overridden for this case: frozen like any account"
    with sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "case.override_set")).one()
        assert event.actor == "李法官" and json.loads(event.payload)["reason"] == "工资已另行支付"
        assert tree.verify(session).ok


def test_a_deduction_checks_the_allowance_and_protected_accounts_again_on_the_day(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Frozen under one standard, deducted under a higher one: the person keeps the higher allowance; a
    wage account frozen under an override that was lifted since is not deducted."""
    from clerk import lifecycle

    banks = book(sessions, tmp_path, [1_500_00, 900_00, 400_00])
    with sessions.begin() as session:
        cases.set_override(session, FIRM_CASE, "protected", on=True, actor="李法官", reason="工资已另行支付")
    control_all(sessions, banks)
    assert sum(held(banks, PERSON_CASE)) == 700_00 and sum(held(banks, FIRM_CASE)) == 170_000_00

    with sessions() as session:
        same = lifecycle.propose_deduction(session, PERSON_CASE, TODAY, EXEMPT)
    assert (same.total_fen, same.allowance_kept_fen) == (700_00, 0)

    higher = Exemptions(
        (LivingStandard("豫", 800_00, dt.date(2026, 7, 1)), *EXEMPT.standards), 3, EXEMPT.protected
    )
    with sessions() as session:
        now = lifecycle.propose_deduction(session, PERSON_CASE, TODAY, higher)
    assert (now.total_fen, now.allowance_kept_fen) == (2_800_00 - 3 * 800_00, 300_00)

    with sessions.begin() as session:
        cases.set_override(
            session, FIRM_CASE, "protected", on=False, actor="李法官", reason="工资账户应予保护"
        )
    with sessions() as session:
        firm = lifecycle.propose_deduction(session, FIRM_CASE, TODAY, EXEMPT)
    assert (firm.total_fen, firm.protected_left) == (80_000_00, 1), "the wage account's money stays"
    assert all(not line.account.endswith("00002") for line in firm.lines)


@pytest.mark.parametrize("overridden", [False, True])
def test_a_large_protected_balance_never_hides_that_a_persons_own_deposits_are_under_the_allowance(
    sessions: sessionmaker[Session], tmp_path: Path, overridden: bool
) -> None:
    """Issue 44: the deduction's re-check counted a protected account's balance in the person's total,
    which the freeze leaves out, so a large wage account hid that the person's own deposits sat under the
    allowance. Now both count the same deposits; with a judge's override of the protection, the account is
    frozen and the allowance is still kept across all of the person's deposits."""
    from clerk import lifecycle

    banks = book(sessions, tmp_path, [1_500_00, 900_00, 400_00])  # 2,800 yuan; the allowance 2,100
    person = banks["bank-a"].ledger.holdings["6222000000000000000"].owner_id
    banks["bank-b"].ledger.add(
        Holding("62220000000000999", person, AssetKind.DEPOSIT, 50_000_00, purpose="migrant_wage")
    )
    if overridden:
        with sessions.begin() as session:
            cases.set_override(session, PERSON_CASE, "protected", on=True, actor="李法官", reason="经审查")
    control_all(sessions, banks)
    total = 2_800_00 + (50_000_00 if overridden else 0)
    assert sum(held(banks, PERSON_CASE)) == total - 3 * 700_00, "frozen: all but the allowance"

    higher = Exemptions(
        (LivingStandard("豫", 800_00, dt.date(2026, 7, 1)), *EXEMPT.standards), 3, EXEMPT.protected
    )
    with sessions() as session:
        proposal = lifecycle.propose_deduction(session, PERSON_CASE, TODAY, higher)
    assert (proposal.total_fen, proposal.allowance_kept_fen) == (total - 3 * 800_00, 300_00)
    assert proposal.protected_left == 0
