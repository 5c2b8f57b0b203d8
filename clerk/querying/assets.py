"""What a registry's report of an asset changes in the case book: the one place that decides it
(`_reported`), for a new hit (`new_asset`), a known one (`refresh`, `update_asset`) and the hit's audit
entry (`hit_payload`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from clerk.store import db
from connectors.base import AssetReport
from models.tables import Asset
from models.values import mask_account

_ASSETS = db.table(Asset)


def _others(report: AssetReport) -> dict[str, object] | None:
    if not report.other_measures:
        return None
    return {
        "measures": [
            {
                "authority": m.authority,
                "amount_fen": m.amount_fen,
                "expires_on": m.expires_on.isoformat() if m.expires_on else None,
            }
            for m in report.other_measures
        ]
    }


#: What a registry's report of an asset sets on it (`_reported`); the rest of its row is set once.
REPORTED = ("balance_fen", "other_measures", "purpose", "description", "last_seen_at")


#: The assets of a reply that the case book knows, by their identifiers at the registry.
def known_of(session: Session, registry_id: int, identifiers: Sequence[str]) -> Select[Any]:
    return select(*(_ASSETS.c[name] for name in ("id", "identifier", "kind", *REPORTED))).where(
        _ASSETS.c.registry_id == registry_id, db.among(session, _ASSETS.c.identifier, identifiers)
    )


def _reported(
    report: AssetReport, now: dt.datetime, known: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The columns a report sets, the one place that decides how a registry's report changes what the case
    book knows of an asset: its balance, and the time it was seen; other authorities' measures, the
    account's purpose and the description only when the report says them. A report silent on a field (a
    deposit feed's event says the balance only; a bank's answer that leaves an account's purpose out)
    keeps what the case book knows (`known`, the asset's columns): a wage account stays a wage account,
    another court's freeze stays ahead until a report says it is lifted."""
    said = report.model_fields_set

    def kept(name: str, value: Any) -> Any:
        return value if known is None or name in said else known[name]

    return {
        "balance_fen": report.balance_fen,
        "other_measures": kept("other_measures", _others(report)),
        "purpose": kept("purpose", report.purpose),
        "description": report.description or (known or {}).get("description"),
        "last_seen_at": now,
    }


def new_asset(
    debtor_id: int, registry_id: int, query_id: int, report: AssetReport, now: dt.datetime
) -> dict[str, Any]:
    """A hit not seen before, as the row `record.record_reply` inserts with the reply's other new assets."""
    return {
        "debtor_id": debtor_id,
        "registry_id": registry_id,
        "kind": report.asset_kind.value,
        "identifier": report.identifier,
        "first_query_id": query_id,
        "first_seen_at": now,
    } | _reported(report, now)


def refresh(asset: dict[str, Any], report: AssetReport, now: dt.datetime) -> tuple[bool, bool]:
    """Bring a known asset's row (as `record_reply` holds it) up to date: whether its balance or others'
    measures changed, and whether anything the report sets but the time it was seen did."""
    values = _reported(report, now, asset)
    before = (asset["balance_fen"], asset["other_measures"])
    changed = before != (values["balance_fen"], values["other_measures"])
    rewritten = any(asset[name] != values[name] for name in REPORTED if name != "last_seen_at")
    asset.update(values)
    return changed, rewritten


def update_asset(asset: Asset, report: AssetReport, now: dt.datetime) -> bool:
    """Bring a known asset (an object of the session) up to date; True when its balance or others'
    measures changed."""
    values = _reported(report, now, {name: getattr(asset, name) for name in REPORTED})
    changed = (asset.balance_fen, asset.other_measures) != (values["balance_fen"], values["other_measures"])
    for name, value in values.items():
        setattr(asset, name, value)
    return changed


def hit_payload(registry_code: str, asset: Mapping[str, Any]) -> dict[str, object]:
    return {
        "registry": registry_code,
        "kind": asset["kind"],
        "asset": mask_account(asset["identifier"]),
        "balance_fen": asset["balance_fen"],
        "others": len((asset["other_measures"] or {}).get("measures", [])),
    }
