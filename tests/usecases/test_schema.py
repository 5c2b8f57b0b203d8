"""The schema: migrations match the models, constraints hold, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from clerk.store import db
from models.tables import Asset, Base, Case, ControlMeasure, Debtor, Payment, Registry


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert db.current_revision(engine) == db.head_revision()


def test_downgrade_and_upgrade_again(engine: Engine) -> None:
    from alembic import command

    command.downgrade(db.alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    before, after = db.upgrade(engine)
    assert (before, after) == (None, db.head_revision())
    assert "audit_events" in inspect(engine).get_table_names()


def _case(number: str = "（2024）豫0185执1号", principal: int = 100) -> Case:
    return Case(
        case_number=number,
        court_code="豫0185",
        filed_on=dt.date(2024, 3, 1),
        judge="j",
        applicant="a",
        principal_fen=principal,
        performance_due_on=dt.date(2024, 1, 1),
    )


def test_constraints_live_in_the_schema(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add(_case(principal=-1))
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add_all([_case(), _case()])
    with sessions.begin() as s:
        case = _case()
        s.add(case)
        s.flush()
        with pytest.raises(IntegrityError), s.begin_nested():
            s.add(Payment(case_id=case.id, paid_on=dt.date(2024, 5, 1), amount_fen=0))
            s.flush()
        debtor = Debtor(kind="person", id_number="11010519491231002X", name="x")
        registry = Registry(code="bank-a", name="A", kind="bank")
        s.add_all([debtor, registry])
        s.flush()
        asset = Asset(
            debtor_id=debtor.id, registry_id=registry.id, kind="deposit", identifier="1", balance_fen=5
        )
        s.add(asset)
        s.flush()
        measure = dict(
            case_id=case.id,
            asset_id=asset.id,
            registry_id=registry.id,
            kind="freeze",
            requested_amount_fen=5,
            idempotency_key="k1",
        )
        s.add(ControlMeasure(**measure))
        s.flush()
        with pytest.raises(IntegrityError), s.begin_nested():
            s.add(ControlMeasure(**measure))  # the same idempotency key twice
            s.flush()
        with pytest.raises(IntegrityError), s.begin_nested():
            s.add(ControlMeasure(**(measure | {"idempotency_key": "k2", "status": "lost"})))
            s.flush()
        with pytest.raises(IntegrityError), s.begin_nested():
            s.add(Payment(case_id=999_999, paid_on=dt.date(2024, 5, 1), amount_fen=1))  # no such case
            s.flush()


def test_timestamps_come_back_timezone_aware(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        s.add(_case())
    with sessions() as s:
        created = s.query(Case).one().created_at
    assert created.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 300
