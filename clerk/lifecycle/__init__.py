"""The measure lifecycle: renewals before measures lapse, lapses recorded, releases when a case is paid or
holds more than it owes, queued and partial measures followed, and deductions a judge approves. Each decides
and writes its actions down; `control` sends and settles them."""

from __future__ import annotations

from clerk.lifecycle.deduction import (
    DeductionProposal,
    Moved,
    ProposedDeduction,
    approve_deduction,
    deduction_outcome,
    propose_deduction,
    record_timeout,
    reject_deduction,
    remind_judge,
    start_deduction,
)
from clerk.lifecycle.release import (
    Released,
    cases_to_release,
    plan_release,
    plan_releases,
    release_due,
)
from clerk.lifecycle.renewal import Lapsed, Renewed, expire_and_tell, expire_lapsed, plan_renewals, renew_due
from clerk.lifecycle.state import record_state, refresh_measures, watched_measures

__all__ = [
    "DeductionProposal",
    "Lapsed",
    "Moved",
    "ProposedDeduction",
    "Released",
    "Renewed",
    "approve_deduction",
    "cases_to_release",
    "deduction_outcome",
    "expire_and_tell",
    "expire_lapsed",
    "plan_release",
    "plan_releases",
    "plan_renewals",
    "propose_deduction",
    "record_state",
    "record_timeout",
    "refresh_measures",
    "reject_deduction",
    "release_due",
    "remind_judge",
    "renew_due",
    "start_deduction",
    "watched_measures",
]
