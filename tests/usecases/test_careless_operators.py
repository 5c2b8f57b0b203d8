"""Careless and hostile input at the command line (issue 25, defects 2, 3, 4, 6, 9, 10): each test failed on
the code before the fix. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from clerk.casebook.casefile import FIELDS
from clerk.store import db
from cli import app
from models.tables import AuditEvent, Case, Payment

runner = CliRunner()
CASE = "(2024)豫0185执1234号"
JUDGE = "李法官"
HEADER = ",".join(FIELDS) + "\n"
ROW = "(2024)豫0185执1234号,2024-03-01,{judge},王五,100000,,,2024-01-01,person,11010519491231002X,{name}\n"


def clerk(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def write_cases(path: Path, judge: str = JUDGE, name: str = "张三") -> Path:
    path.write_text(HEADER + ROW.format(judge=judge, name=name), encoding="utf-8")
    return path


def status_of(database_url: str) -> str:
    with db.session_factory(db.engine_for(database_url))() as session:
        return session.scalar(select(Case.status)) or ""


# --- 2: closing, terminating, tracking, paying need permission ---------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["cases", "close", CASE, "--reason", "结案"],
        ["cases", "close", CASE, "--withdrawn", "--reason", "撤回"],
        ["cases", "terminate", CASE, "--reason", "无财产"],
        ["cases", "track", CASE, "special", "--reason", "涉众"],
        ["cases", "pay", CASE, "100", "--on", "2024-06-29"],
    ],
)
def test_a_stranger_may_not_change_a_case(clerk_env: str, tmp_path: Path, args: list[str]) -> None:
    assert clerk("cases", "import", str(write_cases(tmp_path / "c.csv")))[0] == 0
    code, _, err = clerk(*args, "--actor", "张三")
    assert code == 2 and "--actor: 张三 may not" in err and "neither the case's judge" in err
    assert status_of(clerk_env) == "active"
    with db.session_factory(db.engine_for(clerk_env))() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 0
        assert session.scalar(select(Case.track)) is None
        refusal = session.scalars(select(AuditEvent).where(AuditEvent.action == "access.refused")).one()
    assert refusal.actor == "user:tester" and '"who": "张三"' in refusal.payload
    code, _, _ = clerk(*args, "--actor", JUDGE)
    assert code == 0


def test_the_people_the_settings_allow_may_change_a_case(
    clerk_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clerk.settings import get_settings

    monkeypatch.setenv(
        "CLERK_PEOPLE",
        '{"赵庭长": {"courts": ["豫0185"], "roles": ["supervisor"]},'
        ' "钱执行员": {"courts": ["豫0185"], "roles": ["officer"]}}',
    )
    get_settings.cache_clear()
    assert clerk("cases", "import", str(write_cases(tmp_path / "c.csv")))[0] == 0
    assert clerk("cases", "pay", CASE, "100", "--on", "2024-06-29", "--actor", "钱执行员")[0] == 0
    code, _, err = clerk("cases", "close", CASE, "--reason", "结案", "--actor", "钱执行员")
    assert code == 2 and "may not change this case's status or track" in err  # an officer does not decide
    code, _, err = clerk("cases", "override", CASE, "protected", "--reason", "经审查", "--actor", "钱执行员")
    assert code == 2 and "may not override what the law leaves free on this case" in err  # names the override
    assert clerk("cases", "close", CASE, "--reason", "结案", "--actor", "赵庭长")[0] == 0
    assert status_of(clerk_env) == "closed"


# --- 10: duplicate payments, overpayments, payments on a paid case ----------------------------------


def test_a_payment_typed_twice_or_too_large_is_refused(clerk_env: str, tmp_path: Path) -> None:
    assert clerk("cases", "import", str(write_cases(tmp_path / "c.csv")))[0] == 0
    pay = ("cases", "pay", CASE, "--actor", JUDGE, "--on", "2024-06-29")
    assert clerk(*pay, "1000")[0] == 0
    code, _, err = clerk(*pay, "1000")
    assert code == 2 and "a payment of 1,000.00 on 2024-06-29 is already recorded" in err and "--again" in err
    assert clerk(*pay, "1000", "--again")[0] == 0
    code, _, err = clerk(*pay, "100000000000")
    assert code == 2 and "is more than the 102,550.00 owed on 2024-06-29" in err
    assert clerk(*pay, "102550")[0] == 0
    assert status_of(clerk_env) == "paid"
    code, _, err = clerk(*pay, "100000000000", "--overpaid")
    assert code == 2 and "is paid: no payment can be recorded" in err
    with db.session_factory(db.engine_for(clerk_env))() as session:
        assert session.scalar(select(func.sum(Payment.amount_fen))) == 104_550_00


# --- 3: text is never rich markup ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[/]", "[bold]粗[/bold]", "[red]x", "法官[/b]"])
def test_markup_in_names_is_shown_as_typed(clerk_env: str, tmp_path: Path, text: str) -> None:
    # The judge's name and the debtor's name carry the markup (the debtor's name is masked when shown).
    assert clerk("cases", "import", str(write_cases(tmp_path / "c.csv", judge=f"李{text}")))[0] == 0
    code, out, _ = clerk("cases", "list")
    assert code == 0 and f"李{text}"[:5] in out  # at 80 columns the table cuts the name short, not eats it
    code, out, _ = clerk("cases", "show", CASE)
    assert code == 0 and f"judge 李{text}" in out
    code, _, err = clerk("query", CASE, "--requested-by", f"王{text}")
    assert code == 2 and f"requested_by: 王{text} may not query this case" in err
    code, _, err = clerk("cases", "close", CASE, "--reason", "x", "--actor", f"王{text}")
    assert code == 2 and f"--actor: 王{text} may not" in err


# --- 4 and 9: files that are not case files ----------------------------------------------------------


def test_a_fifo_is_read_with_the_size_limit(
    clerk_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clerk.settings import get_settings

    monkeypatch.setenv("CLERK_IMPORT_MAX_BYTES", "100000")
    get_settings.cache_clear()
    fifo = tmp_path / "cases.csv"
    os.mkfifo(fifo)
    written: list[int] = []

    def endless() -> None:  # a writer that would go on for ever: stops when the reader closes its end
        try:
            with fifo.open("wb") as handle:
                for _ in range(100_000):
                    handle.write(b"x" * 4096)
                    written.append(4096)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=endless)
    writer.start()
    code, _, err = clerk("cases", "import", str(fifo))
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert code == 2 and "is more than the limit of 100,000 bytes" in err
    assert sum(written) < 10_000_000  # it stopped reading near the limit, not at 400 MB


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Path("/dev/zero"), "is more than the limit of"),
        (lambda p: (p / "dir.csv").mkdir() or p / "dir.csv", "file, file: is a directory"),
        (
            lambda p: (
                (p / "deep.jsonl").write_text("[" * 200_000 + "]" * 200_000 + "\n") and p / "deep.jsonl"
            ),
            "line 1, row: is nested too deeply",
        ),
        (
            lambda p: (p / "n.jsonl").write_text('{"principal": 1' + "0" * 5000 + "}\n") and p / "n.jsonl",
            "line 1, row: has a number of 5,001 digits",
        ),
        (
            lambda p: (
                (p / "n.csv").write_text(
                    HEADER + ROW.format(judge=JUDGE, name="张三").replace(",100000,", "," + "9" * 5000 + ",")
                )
                and p / "n.csv"
            ),
            "line 2, principal: is 5,000 characters long: not an amount of yuan",
        ),
    ],
)
def test_files_that_are_no_case_files_get_one_clear_line(
    clerk_env: str, tmp_path: Path, make, message: str
) -> None:  # type: ignore[no-untyped-def]
    code, _, err = clerk("cases", "import", str(make(tmp_path)))
    assert code == 2 and message in err and "Traceback" not in err
    assert "9" * 100 not in err


# --- 6: exports never follow links nor overwrite ---------------------------------------------------------


@pytest.mark.parametrize("command", [["audit", "export", "--case", CASE, "-o"], ["report", "daily", "--csv"]])
def test_exports_refuse_links_existing_files_and_directories(
    clerk_env: str, tmp_path: Path, command: list[str]
) -> None:
    assert clerk("cases", "import", str(write_cases(tmp_path / "c.csv")))[0] == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "export.out"
    link.symlink_to(victim)
    code, _, err = clerk(*command, str(link))
    assert code == 2 and "exists (or is a link)" in err
    assert victim.read_text() == "keep me"
    code, _, err = clerk(*command, str(victim))
    assert code == 2 and "exists (or is a link)" in err and victim.read_text() == "keep me"
    code, _, err = clerk(*command, str(tmp_path))
    assert code == 2 and "is a directory: name a file to write" in err and "Traceback" not in err
    # --overwrite replaces the link itself; what it pointed at is untouched.
    code, _, err = clerk(*command, str(link), "--overwrite")
    assert code == 0, err
    assert victim.read_text() == "keep me" and not link.is_symlink() and link.stat().st_size > 0
    fresh = tmp_path / "fresh.out"
    assert clerk(*command, str(fresh))[0] == 0 and fresh.stat().st_size > 0


def test_the_scheduled_report_replaces_a_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    from clerk.supervision import reports

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "daily-2026-12-01.csv"
    target.symlink_to(victim)
    rows: list[dict[str, object]] = [dict.fromkeys(reports.COLUMNS, 0) | {"court": "豫0185", "judge": "李"}]
    assert reports.write_csv(target, rows, replace=True) == 1
    assert victim.read_text() == "keep me" and not target.is_symlink()
    assert target.read_text(encoding="utf-8-sig").startswith("court,judge")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
