"""Control: freezes and seizures planned within the cap, sent once and settled by key, and the renewals,
releases and deductions of the lifecycle sent the same way.

- `planning`: which measures a case needs today, under the case lock (`store.locks`), written down first.
- `cap`: what live freezes count against the cap, and what is left to freeze on an account.
- `exchange`: the one write-down / send once / settle-by-key mechanism; `measures` and `actions` are its
  two kinds (freezes and seizures; renewals, releases and deductions).
- `answers`: recording what registries answered to a measure, invalid answers included.
- `counts`: the one counts type every control and lifecycle step returns.
- `sheet`: a case's sheet for a judge: standing, assets, what we hold and why not.
- `watch`: deposits that arrive on a debtor's known accounts, frozen within minutes.
"""

from __future__ import annotations

from clerk.control.actions import (
    Actions,
    outgoing_actions,
    record_action_error,
    record_action_reply,
    resolve_actions,
    send_actions,
)
from clerk.control.answers import (
    EXCESS_RELEASE,
    flagged,
    holds_to_check,
    record_error,
    record_replies,
    record_reply,
    write_action,
)
from clerk.control.cap import claims, claims_by_case, covered_by
from clerk.control.counts import SHORT_NAMED, Counts
from clerk.control.exchange import Outgoing
from clerk.control.measures import (
    Measures,
    control_cases,
    dry_run_case,
    outgoing,
    resolve_unconfirmed,
    send,
)
from clerk.control.planning import Plan, plan, plan_cases
from clerk.control.sheet import case_sheet
from models.policy import Policy
from models.status import LIVE

__all__ = [
    "EXCESS_RELEASE",
    "LIVE",
    "SHORT_NAMED",
    "Actions",
    "Counts",
    "Measures",
    "Outgoing",
    "Plan",
    "Policy",
    "case_sheet",
    "claims",
    "claims_by_case",
    "control_cases",
    "covered_by",
    "dry_run_case",
    "flagged",
    "holds_to_check",
    "outgoing",
    "outgoing_actions",
    "plan",
    "plan_cases",
    "record_action_error",
    "record_action_reply",
    "record_error",
    "record_replies",
    "record_reply",
    "resolve_actions",
    "resolve_unconfirmed",
    "send",
    "send_actions",
    "write_action",
]
