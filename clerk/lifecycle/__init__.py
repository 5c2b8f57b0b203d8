"""The measure lifecycle: renewals before measures lapse, lapses recorded, releases when a case is paid or
holds more than it owes, queued and partial measures followed, and deductions a judge approves. Each decides
and writes its actions down; `control` sends and settles them."""

from __future__ import annotations

from clerk.lifecycle.deduction import (
    DeductionProposal,
    ProposedDeduction,
    approve_deduction,
    propose_deduction,
    reject_deduction,
)
from clerk.lifecycle.release import cases_to_release, plan_release
from clerk.lifecycle.renewal import expire_lapsed, plan_renewals
from clerk.lifecycle.state import record_state, refresh_measures, watched_measures

__all__ = [
    "DeductionProposal",
    "ProposedDeduction",
    "approve_deduction",
    "cases_to_release",
    "expire_lapsed",
    "plan_release",
    "plan_renewals",
    "propose_deduction",
    "record_state",
    "refresh_measures",
    "reject_deduction",
    "watched_measures",
]
