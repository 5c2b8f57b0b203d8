"""The audit trail refuses changes, and `verify` catches the ones made underneath it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from clerk.store import audit


@pytest.fixture
def chain(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    with sessions.begin() as s:
        for i in range(1, 6):
            audit.append(
                s,
                "test.event",
                actor=audit.Actor.SYSTEM,
                case_number=f"（2024）豫0185执{i}号",
                payload={"n": i, "debtor": "11010519491231002X"},
            )
    return sessions


def tamper(engine: Engine, *statements: str) -> None:
    """Change the table the way an intruder with the database's owner rights would: triggers off."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        for statement in statements:
            conn.execute(text(statement))


def verify(sessions: sessionmaker[Session], head: str | None = None) -> audit.Verification:
    with sessions() as s:
        return audit.verify(s, head)


def test_intact_chain_verifies_and_payload_is_masked(chain: sessionmaker[Session]) -> None:
    result = verify(chain)
    assert result.ok and result.events == 5
    with chain() as s:
        payloads = [e.payload for e in audit.case_events(s, "（2024）豫0185执3号")]
    assert len(payloads) == 1
    assert "11010519491231002X" not in payloads[0] and "1101**********002X" in payloads[0]


@pytest.mark.parametrize("statement", ["UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"])
def test_the_table_refuses_update_and_delete(chain: sessionmaker[Session], statement: str) -> None:
    with pytest.raises(DatabaseError, match="append-only"), chain.begin() as s:
        s.execute(text(statement))
    assert verify(chain).events == 5


def test_edited_event_is_named(chain: sessionmaker[Session], engine: Engine) -> None:
    tamper(engine, "UPDATE audit_events SET payload = '{\"n\": 99}' WHERE seq = 3")
    result = verify(chain)
    assert (result.ok, result.broken_at, result.events) == (False, 3, 2)
    assert "edited" in (result.reason or "")


def test_deleted_event_is_named(chain: sessionmaker[Session], engine: Engine) -> None:
    tamper(engine, "DELETE FROM audit_events WHERE seq = 2")
    result = verify(chain)
    assert (result.broken_at, result.reason) == (2, "event 2 is missing (the next one stored is 3)")


def test_reordered_events_are_caught(chain: sessionmaker[Session], engine: Engine) -> None:
    tamper(
        engine,
        "UPDATE audit_events SET seq = -1 WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = -1",
    )
    result = verify(chain)
    assert (result.broken_at, result.reason) == (2, "it does not link to the event before it")


def test_truncated_tail_is_caught_with_the_recorded_head(
    chain: sessionmaker[Session], engine: Engine
) -> None:
    head = verify(chain).head
    tamper(engine, "DELETE FROM audit_events WHERE seq = 5")
    assert verify(chain).ok, "without an anchor a cut tail still looks consistent"
    result = verify(chain, head)
    assert (result.ok, result.broken_at) == (False, 5)


def test_export_escapes_formulas_in_csv(chain: sessionmaker[Session]) -> None:
    with chain.begin() as s:
        audit.append(s, "test.event", actor='=HYPERLINK("http://x")', case_number="（2024）豫0185执1号")
    with chain() as s:
        import io

        buffer = io.StringIO()
        count = audit.export(audit.case_events(s, "（2024）豫0185执1号"), buffer, "csv")
    assert count == 2
    assert "'=HYPERLINK" in buffer.getvalue()
