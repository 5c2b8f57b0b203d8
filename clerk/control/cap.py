"""The cap (查扣冻规定 art. 19: never more than is owed), as our records count it: what a case's live freezes
claim (`covered_by`: a freeze counts in full while it may still take effect or top up), and what is left
to freeze on a deposit once other authorities' measures and ours are counted. The rule that splits what
is owed over accounts is `models.rules.allocate_freezes`; this reads what it needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.store import db
from models.status import LIVE
from models.tables import ControlMeasure


class Claim(Protocol):
    """What `covered_by` reads of a measure: a `ControlMeasure`, or a row of its columns."""

    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def requested_amount_fen(self) -> int: ...
    @property
    def actual_amount_fen(self) -> int | None: ...


class Holding(Protocol):
    """What `available` reads of an asset: an `Asset`, or a row of its columns."""

    @property
    def balance_fen(self) -> int | None: ...
    @property
    def other_measures(self) -> Mapping[str, Any] | None: ...


#: The columns of a measure that `covered_by` reads, for reads of many measures as rows (planning).
CLAIM = (
    ControlMeasure.case_id,
    ControlMeasure.asset_id,
    ControlMeasure.kind,
    ControlMeasure.status,
    ControlMeasure.requested_amount_fen,
    ControlMeasure.actual_amount_fen,
)


def covered_by(measure: Claim) -> int:
    """What a live freeze counts against the cap: its claim, the amount it asks for. A pending or queued
    freeze may still take effect, and a partial one keeps catching deposits on its account until it holds
    its claim (banks top it up), so each counts in full; a partial release or a deduction lowers the claim."""
    if measure.kind != "freeze" or measure.status not in LIVE:
        return 0
    return max(measure.requested_amount_fen, measure.actual_amount_fen or 0)


def claims(session: Session, case_id: int) -> int:
    """What a case's live freezes claim against the cap (see `covered_by`)."""
    return sum(
        covered_by(m)
        for m in session.scalars(
            select(ControlMeasure).where(ControlMeasure.case_id == case_id, ControlMeasure.status.in_(LIVE))
        )
    )


def claims_by_case(session: Session) -> dict[int, int]:
    """Every case's claims in one read (for steps that look at all cases)."""
    result: dict[int, int] = {}
    for measure in session.scalars(select(ControlMeasure).where(ControlMeasure.status.in_(LIVE))):
        result[measure.case_id] = result.get(measure.case_id, 0) + covered_by(measure)
    return result


def held_on_assets(session: Session, asset_ids: Sequence[int]) -> dict[int, int]:
    """What our own live freezes (for any case) hold on each asset."""
    held: dict[int, int] = {}
    if not asset_ids:
        return held
    for chunk in db.chunks(asset_ids):
        for measure in db.all_rows(
            session,
            select(*CLAIM).where(
                db.among(session, ControlMeasure.asset_id, chunk), ControlMeasure.status.in_(LIVE)
            ),
        ):
            held[measure.asset_id] = held.get(measure.asset_id, 0) + covered_by(measure)
    return held


def available(asset: Holding, ours: int) -> int:
    """What can still be frozen on a deposit: its balance less other authorities' measures and ours."""
    balance = asset.balance_fen or 0
    others = 0
    for measure in (asset.other_measures or {}).get("measures", []):
        amount = measure.get("amount_fen")
        others += balance if amount is None else int(amount)
    return max(balance - others - ours, 0)
