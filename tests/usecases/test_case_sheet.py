"""A case's sheet read from the database (SQLite and PostgreSQL): every asset with what we hold on it, who
is ahead of us, and why we hold nothing where we hold nothing; masked; the same in a dry run's plan."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk import control
from clerk.casebook.casefile import read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from connectors.simulator.synthetic import credit_code, resident_id
from models.exemptions import Exemptions, LivingStandard
from models.tables import Asset, Case, ControlMeasure, Debtor, Registry
from models.values import mask_id

TODAY = dt.date(2026, 11, 23)
NUMBER, OTHER = "(2026)豫0185执7号", "(2026)豫0185执8号"
_RNG = random.Random(7)
PERSON, FIRM = resident_id(_RNG, "410185"), credit_code(_RNG, "410185")
EXEMPT = Exemptions((LivingStandard("豫", 700_00, dt.date(2025, 1, 1)),), 3, frozenset({"migrant_wage"}))


def _book(sessions: sessionmaker[Session], tmp: Path) -> None:
    def row(number: str, kind: str, debtor: str, name: str) -> dict[str, str]:
        return {
            "case_number": number,
            "filed_on": "2026-03-01",
            "judge": "李法官",
            "applicant": "王五",
            "principal": "100000",
            "judgment_interest": "",
            "costs": "",
            "performance_due_on": "2026-01-01",
            "debtor_kind": kind,
            "debtor_id": debtor,
            "debtor_name": name,
        }

    write_case_file(
        tmp / "cases.csv",
        [
            row(NUMBER, "person", PERSON, "张三"),
            row(NUMBER, "organisation", FIRM, "某某建筑公司"),
            row(OTHER, "organisation", FIRM, "某某建筑公司"),
        ],
    )
    rows, _ = read_case_file(tmp / "cases.csv", max_bytes=10**6, today=TODAY)
    with sessions.begin() as s:
        import_cases(s, rows, actor="user:tester")


def _world(sessions: sessionmaker[Session], tmp: Path) -> None:
    """The person: one deposit we froze in part, one empty; the firm: a deposit all held by another court,
    one whose rest our other case holds, a wage account, a vehicle, and a flat we queue behind a court."""
    _book(sessions, tmp)
    with sessions.begin() as s:
        cases = {c.case_number: c for c in s.scalars(select(Case))}
        ours, other = cases["（2026）豫0185执7号"], cases["（2026）豫0185执8号"]
        person, firm = (s.scalars(select(Debtor).where(Debtor.id_number == i)).one() for i in (PERSON, FIRM))
        bank = Registry(code="bank-zz", name="郑州银行", kind="bank")
        cars = Registry(code="vehicles", name="车管所", kind="vehicle")
        land = Registry(code="realestate", name="不动产登记中心", kind="real_estate")
        s.add_all([bank, cars, land])
        s.flush()
        court = {
            "measures": [
                {"authority": "（2025）粤0106执2735号", "amount_fen": None, "expires_on": "2027-05-18"}
            ]
        }

        def asset(
            debtor: Debtor, registry: Registry, kind: str, ident: str, balance: int | None, **kw: object
        ) -> Asset:
            a = Asset(
                debtor_id=debtor.id,
                registry_id=registry.id,
                kind=kind,
                identifier=ident,
                balance_fen=balance,
                **kw,
            )
            s.add(a)
            s.flush()
            return a

        frozen = asset(person, bank, "deposit", "6222020000000001111", 40_000_00)
        asset(person, bank, "deposit", "6222020000000002222", 0)
        asset(firm, bank, "deposit", "6222020000000003333", 9_000_00, other_measures=court)
        shared = asset(firm, bank, "deposit", "6222020000000004444", 5_000_00)
        asset(firm, bank, "deposit", "6222020000000005555", 70_000_00, purpose="migrant_wage")
        asset(firm, cars, "vehicle", "豫A12345", None)
        flat = asset(
            firm, land, "real_estate", "豫(2020)郑州市不动产权第0012345号", None, other_measures=court
        )

        def measure(case: Case, a: Asset, kind: str, status: str, amount: int, **kw: object) -> None:
            s.add(
                ControlMeasure(
                    case_id=case.id,
                    asset_id=a.id,
                    registry_id=a.registry_id,
                    kind=kind,
                    status=status,
                    requested_amount_fen=amount,
                    idempotency_key=f"k-{a.id}-{case.id}",
                    **kw,
                )
            )

        measure(
            ours,
            frozen,
            "freeze",
            "effective",
            30_000_00,
            actual_amount_fen=25_000_00,
            expires_on=dt.date(2027, 11, 1),
            registry_reference="ZZ-2026-001",
        )
        measure(other, shared, "freeze", "effective", 5_000_00, actual_amount_fen=5_000_00)
        measure(ours, flat, "seizure", "queued", 0, queue_position=2, expires_on=dt.date(2029, 11, 1))


def test_the_sheet_says_what_we_hold_and_why_not_everywhere_else(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    _world(sessions, tmp_path)
    policy = control.Policy(auto_seize=frozenset({"real_estate"}), exempt=EXEMPT)
    with sessions() as s:
        sheet = control.case_sheet(s, NUMBER, TODAY, policy)
    s_ = sheet.standing
    assert (s_.claimed_fen, s_.held_fen, s_.seized, s_.seizures_waiting) == (30_000_00, 25_000_00, 0, 1)
    assert s_.short_fen == s_.owed.remaining - 30_000_00 > 0
    why = {f.label: (f.registry, reason) for f, reason in zip(sheet.found, sheet.reasons(), strict=True)}
    assert why == {
        "****1111": ("bank-zz", None),
        "****2222": ("bank-zz", "balance 0"),
        "****3333": ("bank-zz", "all of it is held: （2025）粤0106执2735号: all of it until 2027-05-18"),
        "****4444": ("bank-zz", "all of it is held: our freezes for other cases: 5,000.00 yuan"),
        "****5555": ("bank-zz", "the account's purpose is protected by law (migrant_wage)"),
        "****2345": ("vehicles", "automatic seizure of vehicle is off: a judge decides"),
        "****345号": ("realestate", None),
    }
    rows = {r["asset"]: r for r in sheet.asset_rows()}
    assert rows["deposit ****1111"]["ours"] == (
        "freeze 30,000.00 yuan (holds 25,000.00), in force, until 2027-11-01, ref ZZ-2026-001"
    )
    assert rows["real estate ****345号"]["ours"] == (
        "seizure, queued behind another authority (place 2), until 2029-11-01"
    )
    assert rows["real estate ****345号"]["ahead"] == "（2025）粤0106执2735号: all of it until 2027-05-18"
    assert sheet.left_free == (
        f"{mask_id(PERSON)} 2,100.00 yuan: kept as the debtor's living allowance",
        "bank-zz ****5555 (migrant_wage) 70,000.00 yuan: the account's purpose is protected by law",
    )
    text = sheet.markdown()
    assert "| bank-zz | deposit ****2222 | 0.00 | balance 0 |" in text
    for secret in (PERSON, FIRM, "6222020000000001111", "豫A12345", "张三"):
        assert secret not in text and secret not in str(sheet)


def test_a_case_fully_claimed_or_ended_says_so(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    _world(sessions, tmp_path)
    with sessions.begin() as s:
        case = s.scalars(select(Case).where(Case.case_number == "（2026）豫0185执7号")).one()
        s.execute(
            ControlMeasure.__table__.update()
            .where(ControlMeasure.case_id == case.id, ControlMeasure.kind == "freeze")
            .values(requested_amount_fen=10**10)
        )
    with sessions() as s:
        covered = control.case_sheet(s, NUMBER, TODAY, control.Policy(exempt=EXEMPT))
    assert covered.standing.short_fen == 0 and covered.headline().endswith("fully claimed")
    assert "not needed: what the case owes is claimed by freezes" in covered.reasons()
    with sessions.begin() as s:
        s.execute(
            Case.__table__.update().where(Case.case_number == "（2026）豫0185执7号").values(status="paid")
        )
    with sessions() as s:
        ended = control.case_sheet(s, NUMBER, TODAY, control.Policy(exempt=EXEMPT))
    assert set(ended.reasons()) == {None, "the case is paid: the clerk places nothing"}
