"""Use case: check who asks before a case query or a decision, and audit every refusal.

A refusal is written to the audit trail in a transaction of its own, so that it stays even though what was
asked is not done.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session, sessionmaker

from clerk.casebook import cases
from clerk.store import audit
from models.access import Action, Person, may
from models.tables import Case


class Refused(PermissionError):
    """Who asked may not do this; the message names the field and the rule."""


def authorize(
    sessions: sessionmaker[Session],
    case: Case,
    who: str | None,
    action: Action,
    people: Mapping[str, Person],
    actor: str,
) -> str:
    """Return why `who` may take `action` on `case`, or audit the refusal and raise `Refused`.

    `actor` is who runs the program (the operator's login, or the flow run), never the name claimed in
    `who`: a refusal is on the record under the one who is really there, with the claimed name beside it."""
    verdict = may(who or "", action, case.judge, case.court_code, people)
    if verdict.allowed:
        return verdict.reason
    with sessions.begin() as session:
        audit.append(
            session,
            "access.refused",
            actor=actor,
            case_number=case.case_number,
            payload={"who": who or "", "action": action.value, "reason": verdict.reason},
        )
    raise Refused(verdict.reason)


def authorize_case(
    sessions: sessionmaker[Session],
    case_number: str,
    who: str | None,
    action: Action,
    people: Mapping[str, Person],
    actor: str,
) -> Case:
    """The case of a number, once `who` is found allowed to take `action` on it (`authorize`); raises
    `InvalidValue` for a malformed number, `cases.CaseNotFound`, or `Refused` (audited)."""
    with sessions() as session:
        case = cases.get_case(session, case_number)
    authorize(sessions, case, who, action, people, actor)
    return case
