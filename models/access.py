"""Who may do what to a case: asking registries about a debtor is lawful only for that debtor's case
(2013 rule, art. 7), so every on-demand query and every judge's decision names who asked, and is allowed
only for the case's own judge or for a person the settings allow at the case's court. Pure rules: callers
bring the names and the settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    JUDGE = "judge"  # 法官: decides
    OFFICER = "officer"  # 执行员: queries and controls
    SUPERVISOR = "supervisor"  # 执行局长 / 庭长: may do either at their courts
    CLERK = "clerk"  # 书记员: sees, does not query or decide


class Action(StrEnum):
    QUERY = "query"  # an on-demand case query, a deduction's start
    DECIDE = "decide"  # a judge's decision (a deduction's approval or rejection)
    MANAGE = "manage"  # a case's status (terminate, close, withdraw) or track: the release run acts on it
    OVERRIDE = "override"  # freeze what the law leaves free (the living allowance, protected accounts)
    PAY = "pay"  # record a payment: it lowers what is owed, and a case paid in full has its measures lifted


ALLOWED_ROLES: dict[Action, frozenset[Role]] = {
    Action.QUERY: frozenset({Role.JUDGE, Role.OFFICER, Role.SUPERVISOR}),
    Action.DECIDE: frozenset({Role.JUDGE, Role.SUPERVISOR}),
    Action.MANAGE: frozenset({Role.JUDGE, Role.SUPERVISOR}),
    Action.OVERRIDE: frozenset({Role.JUDGE, Role.SUPERVISOR}),
    Action.PAY: frozenset({Role.JUDGE, Role.OFFICER, Role.SUPERVISOR}),
}
_VERBS = {
    Action.QUERY: "query this case",
    Action.DECIDE: "decide for this case",
    Action.MANAGE: "change this case's status or track",
    Action.OVERRIDE: "override what the law leaves free on this case (living allowance, protected accounts)",
    Action.PAY: "record a payment on this case",
}
ALL_COURTS = "*"


@dataclass(frozen=True, slots=True)
class Person:
    courts: frozenset[str]  # court codes, or "*" for every court
    roles: frozenset[Role]
    phone: str | None = field(default=None, repr=False)  # where a one-time code for a decision goes
    public_key: str | None = field(default=None, repr=False)  # Ed25519, for decisions they sign


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str


def may(who: str, action: Action, case_judge: str, case_court: str, people: Mapping[str, Person]) -> Verdict:
    """Whether `who` may take `action` on a case of `case_court` whose judge is `case_judge`."""
    who = who.strip()
    field = "judge" if action is Action.DECIDE else "requested_by"  # as the form or the command names it
    if not who:
        return Verdict(False, f"{field}: who asks must be named")
    if who == case_judge.strip():
        return Verdict(True, "the case's judge")
    person = people.get(who)
    if person is not None and (case_court in person.courts or ALL_COURTS in person.courts):
        roles = person.roles & ALLOWED_ROLES[action]
        if roles:
            return Verdict(True, f"{sorted(roles)[0]} at court {case_court}")
    return Verdict(
        False,
        f"{field}: {who} may not {_VERBS[action]}: neither the case's judge nor allowed at court "
        f"{case_court} (settings CLERK_PEOPLE)",
    )
