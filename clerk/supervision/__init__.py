"""Supervision: triage of new cases into tracks, resuming terminated cases whose re-query found assets, node
deadlines with warnings and alerts; `reports` is the daily report."""

from __future__ import annotations

from clerk.supervision.nodes import (
    RESUMED_WORD,
    Reached,
    check_deadlines,
    resume,
    tell_applicants_of_requery,
    triage_new,
)

__all__ = ["RESUMED_WORD", "Reached", "check_deadlines", "resume", "tell_applicants_of_requery", "triage_new"]
