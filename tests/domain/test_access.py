"""Who may query a case or decide for it."""

from __future__ import annotations

from models.access import Action, Person, Role, may

PEOPLE = {
    "赵执行": Person(frozenset({"豫0185"}), frozenset({Role.OFFICER})),
    "钱局长": Person(frozenset({"*"}), frozenset({Role.SUPERVISOR})),
    "孙书记": Person(frozenset({"豫0185"}), frozenset({Role.CLERK})),
}


def test_the_cases_judge_may_query_and_decide() -> None:
    for action in Action:
        assert may("李法官", action, "李法官", "豫0185", {}).allowed


def test_an_officer_may_query_at_their_court_only_and_never_decide() -> None:
    assert may("赵执行", Action.QUERY, "李法官", "豫0185", PEOPLE).allowed
    elsewhere = may("赵执行", Action.QUERY, "李法官", "京0105", PEOPLE)
    assert not elsewhere.allowed
    assert elsewhere.reason == (
        "requested_by: 赵执行 may not query this case: neither the case's judge nor allowed at court 京0105 "
        "(settings CLERK_PEOPLE)"
    )
    assert not may("赵执行", Action.DECIDE, "李法官", "豫0185", PEOPLE).allowed


def test_a_supervisor_of_every_court_may_do_both_and_a_clerk_neither() -> None:
    assert may("钱局长", Action.DECIDE, "李法官", "京0105", PEOPLE).allowed
    assert not may("孙书记", Action.QUERY, "李法官", "豫0185", PEOPLE).allowed


def test_nobody_named_is_refused() -> None:
    verdict = may("  ", Action.QUERY, "李法官", "豫0185", PEOPLE)
    assert not verdict.allowed and verdict.reason == "requested_by: who asks must be named"
