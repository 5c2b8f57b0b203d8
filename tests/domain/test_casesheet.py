"""The case sheet's words: why we hold nothing on an asset, in the planner's order; the standing's sums."""

from __future__ import annotations

import datetime as dt

import pytest

from models import casesheet
from models.casesheet import Conditions, Found, OtherMeasure, Ours, Standing, why_not
from models.rules import Owed

OWED = Owed(dt.date(2026, 12, 1), 100_00, 0, 0, 0, 0, 0, 100_00, 10)
SHORT = Standing(OWED, 0, 0, 0)
COVERED = Standing(OWED, 100_00, 100_00, 0)
ON = Conditions("active", True, frozenset({"real_estate"}), {"4101****0001": 2_100_00})


def deposit(balance: int | None = 500_00, **kw: object) -> Found:
    fields: dict[str, object] = {"debtor": "4101****0001", "person": True, "registry": "bank"}
    fields |= {"kind": "deposit", "label": "****0001", "balance_fen": balance, "room_fen": balance or 0} | kw
    return Found(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("found", "standing", "conditions", "reason"),
    [
        (
            deposit(),
            SHORT,
            Conditions("terminated", True, frozenset()),
            "the case is terminated: the clerk places nothing",
        ),
        (deposit(0), SHORT, ON, "balance 0"),
        (deposit(None), SHORT, ON, "balance 0"),
        (deposit(protected="wage"), SHORT, ON, "the account's purpose is protected by law (wage)"),
        (
            deposit(
                others=(OtherMeasure("某法院", 300_00, dt.date(2027, 1, 1)),),
                for_other_cases_fen=200_00,
                room_fen=0,  # 500.00 less 300.00 and 200.00 (clerk.control.cap.available)
            ),
            SHORT,
            ON,
            "all of it is held: 某法院: 300.00 yuan until 2027-01-01; our freezes for other cases: 200.00 yuan",
        ),
        (deposit(), COVERED, ON, "not needed: what the case owes is claimed by other freezes"),
        (
            deposit(),
            SHORT,
            Conditions("active", False, frozenset()),
            "automatic freezing is off: a judge decides",
        ),
        (
            deposit(),
            SHORT,
            ON,
            "kept as the debtor's living allowance (2,100.00 yuan across the debtor's deposits)",
        ),
        (deposit(person=False), SHORT, ON, "not frozen yet: the next control run places it"),
        (
            Found("x", False, "cars", "vehicle", "****0002", None),
            SHORT,
            ON,
            "automatic seizure of vehicle is off: a judge decides",
        ),
        (
            Found("x", False, "land", "real_estate", "****0003", None),
            SHORT,
            ON,
            "not seized yet: the next control run places it",
        ),
        (
            Found("x", False, "land", "real_estate", "****0003", None),
            COVERED,
            ON,
            "not needed: what the case owes is claimed by freezes",
        ),
    ],
)
def test_why_we_hold_nothing(found: Found, standing: Standing, conditions: Conditions, reason: str) -> None:
    assert why_not(found, standing, conditions) == reason


def test_an_asset_we_hold_something_on_has_no_reason_and_the_standing_adds_up() -> None:
    freeze = Ours("freeze", "effective", 80_00, 60_00, dt.date(2027, 11, 1), None, "R-1")
    sent = Ours("freeze", "requested", 20_00, None, None, None, None)
    seizure = Ours("seizure", "queued", 0, None, None, 2, None)
    found = (
        deposit(ours=(freeze, sent)),
        Found("x", False, "land", "real_estate", "****0003", None, ours=(seizure,)),
    )
    standing = casesheet.standing_of(OWED, found)
    assert (standing.claimed_fen, standing.held_fen, standing.seized, standing.seizures_waiting) == (
        100_00,
        60_00,
        0,
        1,
    )
    assert standing.short_fen == 0
    assert why_not(found[0], standing, ON) is None
    sheet = casesheet.Sheet("（2026）豫0185执7号", "李法官", standing, found, ON, planned=True)
    assert sheet.asset_rows()[0]["ours"] == (
        "freeze 80.00 yuan (holds 60.00), in force, until 2027-11-01, ref R-1; freeze 20.00 yuan, would be sent"
    )
    assert sheet.headline() == (
        "（2026）豫0185执7号: owes 100.00 yuan today; our freezes would claim 100.00, 60.00 held in force; "
        "1 seizure(s) queued or awaiting an answer; fully claimed"
    )
    assert sheet.markdown().startswith("# Case sheet （2026）豫0185执7号 (dry run: the plan, nothing sent)\n")


def test_a_cell_cannot_break_the_markdown_table() -> None:
    found = (deposit(others=(OtherMeasure("a|b\nc", None, None),)),)
    sheet = casesheet.Sheet("n", "j", Standing(OWED, 0, 0, 0), found, ON)
    text = sheet.markdown().splitlines()
    [row] = [line for line in text if line.startswith("| bank")]
    assert row.count(" | ") == 3
    assert "- bank deposit ****0001: a\\|b c: all of it" in text
