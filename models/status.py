"""Every status the clerk writes, as enums (they are `str`, so they compare equal to what is stored), the
groups the rules speak of, and the measure's transition table.

No Prefect, HTTP or SQL here: `models/tables.py` builds its CHECK constraints from these, and the
application layer names statuses only through them.
"""

from __future__ import annotations

from enum import StrEnum

#: The name of a run's final state when what it was asked is refused (no such case, a person who may not
#: ask, a malformed number): of type Completed, so that operators who watch failed runs are not alarmed by
#: a judge's typo; the message says why, as for any input error.
REFUSED = "Refused"


class CaseStatus(StrEnum):
    ACTIVE = "active"
    TERMINATED = "terminated"  # 终本: ended for now, re-queried (GLOSSARY)
    RESUMED = "resumed"  # a terminated case taken up again under a new number
    PAID = "paid"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"


#: Case statuses whose measures must all be lifted.
ENDED = (CaseStatus.PAID, CaseStatus.WITHDRAWN, CaseStatus.CLOSED)
#: Case statuses whose measures are kept (and renewed) while anything is owed.
KEPT = (CaseStatus.ACTIVE, CaseStatus.TERMINATED)


class MeasureStatus(StrEnum):
    REQUESTED = "requested"  # written down, sent or about to be; settled by its key
    EFFECTIVE = "effective"
    QUEUED = "queued"  # behind another authority's measure (轮候)
    RENEWED = "renewed"
    RELEASED = "released"
    EXPIRED = "expired"
    FAILED = "failed"


#: Measures that still hold (or may yet hold) something: they count against the cap.
LIVE = (MeasureStatus.REQUESTED, MeasureStatus.EFFECTIVE, MeasureStatus.QUEUED, MeasureStatus.RENEWED)

#: Which status a measure may move to from which (a registry's answer, a release, a lapse, a deduction).
#: Anything else is a defect: the lifecycle's state-machine test checks every move against this table.
TRANSITIONS: dict[MeasureStatus, frozenset[MeasureStatus]] = {
    MeasureStatus.REQUESTED: frozenset(
        {MeasureStatus.EFFECTIVE, MeasureStatus.QUEUED, MeasureStatus.FAILED, MeasureStatus.RELEASED}
    ),
    MeasureStatus.QUEUED: frozenset({MeasureStatus.EFFECTIVE, MeasureStatus.RELEASED, MeasureStatus.FAILED}),
    MeasureStatus.EFFECTIVE: frozenset({MeasureStatus.RELEASED, MeasureStatus.EXPIRED}),
    MeasureStatus.RENEWED: frozenset({MeasureStatus.RELEASED, MeasureStatus.EXPIRED}),
    MeasureStatus.RELEASED: frozenset(),
    MeasureStatus.EXPIRED: frozenset(),
    MeasureStatus.FAILED: frozenset(),
}


def may_move(before: str, after: str) -> bool:
    """Whether a measure may go from `before` to `after` (staying where it is always may)."""
    return before == after or MeasureStatus(after) in TRANSITIONS[MeasureStatus(before)]


class ActionStatus(StrEnum):
    """A renewal, release or deduction of a measure."""

    REQUESTED = "requested"
    DONE = "done"
    FAILED = "failed"


class ActionKind(StrEnum):
    RENEW = "renew"
    RELEASE = "release"
    DEDUCT = "deduct"


class LookupStatus(StrEnum):
    """One debtor's lookup at one registry."""

    SENT = "sent"  # written down before the request left
    PENDING = "pending"  # answered "later": collected by its reference
    ANSWERED = "answered"
    FAILED = "failed"


#: Lookups that make their debtor due again at once.
UNANSWERED = (LookupStatus.FAILED, LookupStatus.SENT)


class NoticeStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
