"""Planning control: which freezes and seizures each case needs today, decided under the case lock
(`store.locks`) and written down (status `requested`, each with its idempotency key) in the transaction
that checks the cap, before anything is sent (`control.exchange` sends them once). Two runs planning the
same case are serialised by the lock, and the second sees the first one's measures.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.casebook import cases
from clerk.control.cap import CLAIM, available, covered_by, held_on_assets
from clerk.control.exchange import Outgoing
from clerk.store import audit, bulk, db, locks
from connectors.base import ControlRequest, MeasureKind
from models import rules
from models.exemptions import Deposit, Exemptions, room_for
from models.policy import Policy
from models.status import LIVE, CaseStatus
from models.tables import Asset, Case, CaseDebtor, ControlMeasure, Debtor, Payment, Registry
from models.values import DebtorKind, mask_account

_CASES, _MEASURES = db.table(Case), db.table(ControlMeasure)


@dataclass
class Plan:
    case_number: str
    remaining_fen: int
    covered_before_fen: int
    #: The measures written down, as the requests that place them (they hold personal data: never in a
    #: task's result; `measure_ids` are their ids).
    outgoing: list[Outgoing] = field(default_factory=list, repr=False)
    freeze_fen: int = 0
    seizures: int = 0
    allowance_kept_fen: int = 0  # left free on persons' deposits as their living allowance
    protected_accounts: int = 0  # deposits not frozen because their purpose is protected

    @property
    def measure_ids(self) -> list[int]:
        return [item.id for item in self.outgoing]

    @property
    def short_fen(self) -> int:
        """What the case still owes that no freeze covers after this plan (a judge decides what next)."""
        return max(0, self.remaining_fen - self.covered_before_fen - self.freeze_fen)


def plan(session: Session, case_id: int, today: dt.date, policy: Policy, actor: str) -> Plan:
    """Decide and write down the measures a case needs today, in the caller's transaction."""
    [result] = plan_cases(session, [case_id], today, policy, actor)
    return result


def plan_cases(
    session: Session, case_ids: Sequence[int], today: dt.date, policy: Policy, actor: str
) -> list[Plan]:
    """Decide and write down the measures each case needs today, in the caller's transaction; plans in
    the order of `case_ids`.

    The cases are locked first, in id order (two clerks planning overlapping cases wait for each other
    instead of deadlocking), `FOR NO KEY UPDATE`: a case's id never changes, and the stronger `FOR UPDATE`
    also waits for every insert of a row that refers to the case (a notice, a measure: PostgreSQL checks the
    reference with a `FOR KEY SHARE` lock), which a clerk recording control answers for other cases in its
    own order takes one after another; two shards of a province sweep deadlocked that way at 1,000,000
    debtors (tests/usecases/test_lock_order.py). Every writer of what a case owes takes the same lock
    first. They are read together: their measures, their debtors' assets and what our live
    freezes hold on those assets, three reads for the lot. Every measure is then written in one INSERT and
    audited in one append (which takes no lock: clerk.store.audit). A freeze planned
    here for one case counts against the asset for the next case that shares the debtor."""
    ids = sorted(set(case_ids))
    if not ids:
        return []
    locked: dict[int, Any] = {}
    paid: dict[int, list[rules.Payment]] = {}
    live: dict[int, list[Any]] = {}
    assets: dict[int, list[Any]] = {}
    people: dict[int, int | None] = {}  # natural persons among the debtors -> their dependants
    for chunk in db.chunks(locks.lock_case_ids(session, ids)):  # rows, not objects: a thousand cases a page
        locked.update(
            (c.id, c) for c in db.all_rows(session, select(*_CASE).where(db.among(session, Case.id, chunk)))
        )
        payments = select(Payment.case_id, Payment.paid_on, Payment.amount_fen)
        for case_id, paid_on, amount in db.all_rows(
            session, payments.where(db.among(session, Payment.case_id, chunk))
        ):
            paid.setdefault(case_id, []).append(rules.Payment(paid_on, amount))  # owed_on orders them
        for measure in db.all_rows(
            session,
            select(*CLAIM).where(
                db.among(session, ControlMeasure.case_id, chunk), ControlMeasure.status.in_(LIVE)
            ),
        ):
            live.setdefault(measure.case_id, []).append(measure)
        found = db.all_rows(
            session,
            select(CaseDebtor.case_id, *_ASSET, Debtor.kind.label("debtor_kind"), Debtor.dependants)
            .join(Asset, Asset.debtor_id == CaseDebtor.debtor_id)
            .join(Debtor, Debtor.id == CaseDebtor.debtor_id)
            .where(db.among(session, CaseDebtor.case_id, chunk)),
        )
        for row in sorted(found, key=attrgetter("id")):
            assets.setdefault(row.case_id, []).append(row)
            if row.debtor_kind == DebtorKind.PERSON:
                people[row.debtor_id] = row.dependants
    held_on = held_on_assets(session, sorted({a.id for group in assets.values() for a in group}))
    registries = _registry_codes(session)

    plans: dict[int, Plan] = {}
    written: list[tuple[Any, Any, dict[str, Any]]] = []
    for case_id in ids:
        case = locked.get(case_id)
        if case is None:
            raise LookupError(f"case id {case_id} does not exist")
        owed = cases.owed_with(case, paid.get(case_id, []), today)
        mine = live.get(case_id, [])
        covered = sum(covered_by(m) for m in mine)
        result = plans[case_id] = Plan(case.case_number, owed.remaining, covered)
        if case.status != CaseStatus.ACTIVE or owed.remaining <= covered:
            continue
        found = assets.get(case_id, [])
        if policy.auto_freeze:
            holdings = _freezable(case, found, held_on, people, policy.exempt, today, result)
            by_id = {a.id: a for a in found}
            for allocation in rules.allocate_freezes(owed.remaining, covered, holdings):
                asset = by_id[allocation.key]
                written.append((case, asset, _row(case, asset, "freeze", allocation.amount)))
                held_on[asset.id] = held_on.get(asset.id, 0) + allocation.amount
                result.freeze_fen += allocation.amount
        if covered + result.freeze_fen < owed.remaining:
            seized = {m.asset_id for m in mine if m.kind == "seizure"}
            for asset in found:
                if asset.kind in policy.auto_seize and asset.id not in seized:
                    written.append((case, asset, _row(case, asset, "seizure", None)))
                    result.seizures += 1
    measure_ids = bulk.insert_rows(session, _MEASURES, [values for _, _, values in written])  # their ids
    entries: list[audit.Entry] = []
    for (case, asset, values), measure_id in zip(written, measure_ids, strict=True):
        registry = registries[asset.registry_id]
        plans[case.id].outgoing.append(
            request_of(
                measure_id,
                values["kind"],
                values["idempotency_key"],
                values["requested_amount_fen"],
                asset.debtor_id,
                asset.identifier,
                asset.kind,
                case.case_number,
                registry,
            )
        )
        entries.append(_requested(case, asset, measure_id, values, registry, actor))
    audit.append_many(session, entries)
    return [plans[case_id] for case_id in case_ids]


def _freezable(
    case: Any,
    found: Sequence[Any],
    held_on: Mapping[int, int],
    people: Mapping[int, int | None],
    exempt: Exemptions,
    today: dt.date,
    plan: Plan,
) -> list[rules.Holding]:
    """The case's deposits with what may be frozen on each, largest first (to touch as few banks as
    possible), as the law's one reckoning leaves them (`models.exemptions.room_for`): protected purposes
    left out, and each natural person's living allowance left free across all of the person's deposits
    together, unless a judge overrode either for this case."""
    deposits = [
        Deposit(a.id, a.debtor_id, available(a, 0), held_on.get(a.id, 0), a.purpose)
        for a in found
        if a.kind == "deposit"
    ]
    room = room_for(exempt, case, today, deposits, people)
    plan.protected_accounts += len(room.protected)
    by_debtor: dict[int, list[rules.Holding]] = {}
    for d in deposits:
        if d.key not in room.protected:
            by_debtor.setdefault(d.debtor, []).append(rules.Holding(d.key, room.room[d.key]))
    holdings: list[rules.Holding] = []
    for debtor_id, group in by_debtor.items():
        # Accounts we hold nothing on first, largest first: what the allowance keeps free stays on accounts
        # already frozen, so an account found later is frozen before a second freeze goes on one.
        group.sort(key=lambda h: (held_on.get(h.key, 0) > 0, -h.available))
        kept = room.take(debtor_id, group)
        plan.allowance_kept_fen += sum(h.available for h in group) - sum(h.available for h in kept)
        holdings += kept
    holdings.sort(key=lambda h: -h.available)
    return holdings


def _registry_codes(session: Session) -> dict[int, str]:
    """Registry id -> code; a handful of rows, read once per session."""
    codes = session.info.get("registry_codes")
    if codes is None:
        codes = session.info["registry_codes"] = {r.id: r.code for r in session.scalars(select(Registry))}
    return codes


#: The columns of a case that planning reads.
_CASE = (
    Case.id,
    Case.case_number,
    Case.status,
    Case.court_code,
    Case.override_allowance,
    Case.override_protected,
    Case.principal_fen,
    Case.judgment_interest_fen,
    Case.costs_fen,
    Case.performance_due_on,
)

#: The columns of an asset that planning reads.
_ASSET = (
    Asset.id,
    Asset.debtor_id,
    Asset.registry_id,
    Asset.kind,
    Asset.identifier,
    Asset.balance_fen,
    Asset.other_measures,
    Asset.purpose,
)


def _row(case: Any, asset: Any, kind: str, amount: int | None) -> dict[str, Any]:
    """A measure to write down (status `requested`, by the column's default)."""
    return {
        "case_id": case.id,
        "asset_id": asset.id,
        "registry_id": asset.registry_id,
        "kind": kind,
        "requested_amount_fen": amount or 0,
        "idempotency_key": uuid.uuid4().hex,
    }


def request_of(
    measure_id: int,
    kind: str,
    key: str,
    amount: int,
    debtor_id: int,
    identifier: str,
    asset_kind: str,
    case_number: str,
    registry: str,
) -> Outgoing:
    """A written-down measure as the request that places it."""
    request = ControlRequest(
        idempotency_key=key,
        case_number=case_number,
        subject_ref=str(debtor_id),
        asset_identifier=identifier,
        kind=MeasureKind(kind),
        amount_fen=amount if kind == "freeze" else None,
        years=rules.TERM_YEARS[rules.AssetKind(asset_kind)],
    )
    return Outgoing(measure_id, kind, registry, request)


def _requested(
    case: Any, asset: Any, measure_id: int, row: dict[str, Any], registry: str, actor: str
) -> audit.Entry:
    return audit.Entry(
        "measure.requested",
        actor,
        case.case_number,
        {
            "measure": measure_id,
            "kind": row["kind"],
            "registry": registry,
            "asset": mask_account(asset.identifier),
            "amount_fen": row["requested_amount_fen"] or None,
            "key": row["idempotency_key"],
        },
    )


# --- sending and recording ----------------------------------------------------------------------------
