"""Use cases of querying: which debtors are due, what to ask, and recording what registries answered.

Each hit is recorded once: an asset is one row per (registry, identifier); a later reply updates its
balance and other authorities' measures and says what changed, in the audit trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk.casebook import access, cases
from clerk.store import db
from connectors.base import Subject
from connectors.config import RegistryConfig
from models.access import Action, Person
from models.tables import CaseDebtor, Debtor, QueryRun, Registry, utcnow
from models.values import DebtorKind, InvalidValue


def ensure_registries(session: Session, configs: Iterable[RegistryConfig]) -> dict[str, int]:
    """The registries of the settings as rows; returns code -> id."""
    configs = list(configs)
    # Several clerk processes may start at once: a registry another one added first is left as it is.
    db.insert_missing(
        session, Registry, [{"code": c.code, "name": c.name, "kind": c.kind.value} for c in configs]
    )
    rows = session.execute(
        select(Registry.code, Registry.id).where(Registry.code.in_([c.code for c in configs]))
    )
    return {code: registry_id for code, registry_id in rows}


def debtor_ids_of_case(session: Session, case_id: int) -> list[int]:
    return list(
        session.scalars(
            select(CaseDebtor.debtor_id).where(CaseDebtor.case_id == case_id).order_by(CaseDebtor.debtor_id)
        )
    )


def subjects(session: Session, debtor_ids: Sequence[int]) -> list[Subject]:
    """What a registry is asked about each debtor; `ref` is the debtor's id, never personal data."""
    columns = (Debtor.id, Debtor.kind, Debtor.id_number, Debtor.name)
    rows = db.all_rows(session, select(*columns).where(db.among(session, Debtor.id, debtor_ids)))
    return [Subject(ref=str(i), kind=DebtorKind(k), id_number=n, name=name) for i, k, n, name in sorted(rows)]


def start_run(session: Session, trigger: str, flow_run_id: str | None = None) -> int:
    run = QueryRun(trigger=trigger, flow_run_id=flow_run_id)
    session.add(run)
    session.flush()
    return run.id


def finish_run(session: Session, run_id: int, status: str, summary: dict[str, object]) -> None:
    run = session.get(QueryRun, run_id)
    assert run is not None
    run.status, run.finished_at, run.summary = status, utcnow(), summary


def run_summaries(session: Session, flow_run_ids: Sequence[str]) -> dict[str, dict[str, object]]:
    """The summaries of the finished runs started by these Prefect flow runs, by flow run id."""
    rows = session.execute(
        select(QueryRun.flow_run_id, QueryRun.summary).where(
            QueryRun.flow_run_id.in_(list(flow_run_ids)), QueryRun.finished_at.is_not(None)
        )
    )
    return {str(flow_run_id): dict(summary or {}) for flow_run_id, summary in rows}


def new_request_ref(run_id: int, registry: str) -> str:
    return f"r{run_id}-{registry}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class CaseQuery:
    """A case query started: its run (0 for a dry run, which records nothing, not even its run), its case,
    and the case's debtors."""

    run_id: int
    case_id: int
    debtor_ids: list[int]


def start_case_query(
    sessions: sessionmaker[Session],
    case_number: str,
    requested_by: str,
    people: Mapping[str, Person],
    operator: str,
    *,
    dry_run: bool,
    flow_run_id: str | None,
    overrides: Sequence[str] = (),
    reason: str | None = None,
) -> CaseQuery:
    """Check who asks (asking about a debtor is lawful only for the debtor's case, by its people: a refusal
    is audited and raised as `access.Refused`) and start the case's query run. `overrides` (exemptions a
    judge overrides for this case: models.exemptions) are set first, by a person who may manage the case,
    with the reason, audited."""
    case = access.authorize_case(sessions, case_number, requested_by, Action.QUERY, people, operator)
    if overrides:
        if dry_run:
            raise InvalidValue(
                "override", "a dry run changes nothing: override in a real run, or with clerk cases override"
            )
        access.authorize(sessions, case, requested_by, Action.OVERRIDE, people, operator)
        with sessions.begin() as session:
            for exemption in overrides:
                cases.set_override(
                    session,
                    case_number,
                    exemption,
                    on=True,
                    actor=operator,
                    reason=reason or "",
                    by=requested_by,
                )
    with sessions.begin() as session:
        run_id = 0 if dry_run else start_run(session, "case-query", flow_run_id)
        return CaseQuery(run_id, case.id, debtor_ids_of_case(session, case.id))
