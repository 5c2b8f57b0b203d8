"""The `clerk` command line, end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from clerk.casebook.casefile import FIELDS
from cli import app

runner = CliRunner()
CASE = "(2024)豫0185执1234号"
ROW = (
    "(2024)豫0185执1234号,2024-03-01,李法官,王五,100000,,,2024-01-01,person,11010519491231002X,张三\n"
    "(2024)豫0185执1234号,2024-03-01,李法官,王五,100000,,,2024-01-01,organisation,91350100M000100Y43,某某公司\n"
)
HEADER = ",".join(FIELDS) + "\n"


def clerk(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def case_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + ROW).encode())
    return path


def test_import_show_pay_verify_export(clerk_env: str, case_file: Path, tmp_path: Path) -> None:
    code, out, _ = clerk("cases", "import", str(case_file))
    assert code == 0
    assert "1 case(s) added" in out and "2 case-debtor link(s) added" in out
    code, out, _ = clerk("cases", "import", str(case_file))
    assert (code, "0 case(s) added, 1 already known" in out) == (0, True)

    code, out, _ = clerk("cases", "show", CASE, "--on", "2024-06-29", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["owed"] == {
        "on": "2024-06-29",
        "days_late": 180,
        "principal": 10_000_000,
        "judgment_interest": 0,
        "delayed_interest": 315_000,
        "fee": 140_000,
        "costs": 0,
        "paid": 0,
        "remaining": 10_455_000,
    }
    assert "11010519491231002X" not in out and "张三" not in out

    code, out, _ = clerk("cases", "show", "（2024）豫0185执1234号", "--on", "2024-06-29")
    assert (
        code == 0 and "104,550.00" in out and "1101**********002X" in out and "11010519491231002X" not in out
    )

    code, out, _ = clerk("cases", "pay", CASE, "4550", "--on", "2024-06-29", "--actor", "李法官")
    assert code == 0 and "remaining on 2024-06-29: 100,000.00" in out

    code, out, _ = clerk("audit", "verify")
    assert code == 0 and "intact: 3 event(s)" in out  # import, file, payment

    export = tmp_path / "trail.csv"
    code, _, err = clerk("audit", "export", "--case", CASE, "--format", "csv", "--output", str(export))
    assert code == 0 and "2 event(s) exported" in err
    lines = export.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("seq,position,occurred_at,actor,action")
    assert "payment.recorded" in lines[2] and "user:李法官" in lines[2]  # the judge who recorded it
    code, out, _ = clerk("audit", "export", "--case", CASE, "--format", "jsonl")
    assert [json.loads(line)["action"] for line in out.splitlines()] == ["case.imported", "payment.recorded"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["cases", "show", "(2024)豫0185执12A4号"],
            "case_number: '(2024)豫0185执12A4号' is not a case number: the sequence must be digits",
        ),
        (["cases", "show", "(2024)豫0185执9号"], "case_number: no case （2024）豫0185执9号 in the case book"),
        (["cases", "show", CASE, "--on", "2024-02-30"], "--on: '2024-02-30' is not a real date"),
        (["cases", "pay", CASE, "--on", "2024-06-29", "--", "-3"], "amount: '-3' is negative"),
        (
            ["cases", "pay", CASE, "3", "--on", "2999-01-01", "--actor", "李法官"],
            "paid_on: 2999-01-01 is in the future",
        ),
        (["audit", "export", "--case", CASE, "--format", "xlsx"], "--format: 'xlsx' is not a format"),
        (
            ["query", CASE, "--requested-by", "李法官", "--registry", "bank-icbcc"],
            "--registry: unknown registry bank-icbcc: the settings have bank-icbc, bank-ccb",
        ),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_2(
    clerk_env: str, case_file: Path, args: list[str], message: str
) -> None:
    clerk("cases", "import", str(case_file))
    code, out, err = clerk(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


def test_bad_file_lists_problems_and_writes_nothing(clerk_env: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + ROW.replace("100000", "abc", 1), encoding="utf-8")
    code, _, err = clerk("cases", "import", str(bad))
    assert code == 2
    assert "nothing was written" in err
    assert "line 2, principal: 'abc' is not an amount" in err
    assert "line 3, principal: differs from line 2 for the same case number" not in err  # line 2 failed alone
    code, out, _ = clerk("audit", "verify")
    assert "intact: 0 event(s)" in out


def test_wrong_setting_names_the_variable(clerk_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from clerk.settings import get_settings

    monkeypatch.setenv("CLERK_RENEWAL_LEAD_DAYS", "3")
    get_settings.cache_clear()
    code, _, err = clerk("cases", "list")
    assert code == 2
    assert "CLERK_RENEWAL_LEAD_DAYS: must be at least 7 days" in err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_file_edited_underneath_is_caught(clerk_env: str, case_file: Path) -> None:
    clerk("cases", "import", str(case_file))
    clerk("cases", "pay", CASE, "10", "--on", "2024-06-29", "--actor", "李法官")
    raw = sqlite3.connect(clerk_env.removeprefix("sqlite:///"))
    raw.execute("DROP TRIGGER audit_events_no_update")
    raw.execute(
        "UPDATE audit_events SET payload = replace(payload, '1000', '9000') WHERE action = 'payment.recorded'"
    )
    raw.commit()
    raw.close()
    code, _, err = clerk("audit", "verify")
    assert code == 1
    assert "BROKEN" in err and "event seq 3" in err and "edited" in err


def test_database_password_is_never_printed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from clerk.settings import get_settings

    monkeypatch.setenv("CLERK_DATABASE_URL", "postgresql+psycopg://clerk:s3cret-pw@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        assert "s3cret-pw" not in repr(get_settings())
        assert get_settings().database_display == "postgresql+psycopg://clerk:***@127.0.0.1:1/none"
        code, out, err = clerk("demo")
    finally:
        get_settings.cache_clear()
    assert code == 1
    assert "the database cannot be reached" in err
    assert "s3cret-pw" not in out + err


def test_status_changes_and_tracks_are_a_judges_audited_decisions(clerk_env: str, case_file: Path) -> None:
    assert clerk("cases", "import", str(case_file))[0] == 0
    code, _, err = clerk("cases", "track", CASE, "urgent", "--reason", "x", "--actor", "李法官")
    assert code == 2 and "track: 'urgent' is not a track: use one of fast, simple, normal, special" in err
    code, out, _ = clerk("cases", "track", CASE, "special", "--reason", "涉众案件", "--actor", "李法官")
    assert code == 0 and "is on the special track (set by a judge)" in out
    code, out, err = clerk("cases", "list")
    assert code == 0 and "special" in out and "1 of 1 case(s)" in err
    assert all(cell_len(line) <= 80 for line in out.splitlines())
    code, out, _ = clerk("cases", "list", "--json")
    assert json.loads(out)["case_number"] == "（2024）豫0185执1234号" and "remaining_fen" in json.loads(out)
    code, out, _ = clerk("cases", "list", "--csv")
    assert out.splitlines()[1].startswith("（2024）豫0185执1234号,李法官,active,special,2,")
    code, _, err = clerk("cases", "list", "--csv", "--json")
    assert code == 2 and "give --json or --csv, not both" in err
    code, _, err = clerk("cases", "close", CASE, "--reason", "", "--actor", "李法官")
    assert code == 2 and "reason: a status change needs a reason" in err
    code, out, _ = clerk("cases", "close", CASE, "--withdrawn", "--reason", "申请人撤回", "--actor", "李法官")
    assert code == 0 and "is withdrawn; its measures are released by the next release run" in out
    code, _, err = clerk("cases", "terminate", CASE, "--reason", "无财产", "--actor", "李法官")
    assert code == 2 and "is withdrawn: it cannot become terminated" in err
    code, out, _ = clerk("audit", "export", "--case", CASE)
    assert code == 0 and "case.track_set" in out and "case.withdrawn" in out and "申请人撤回" in out


def test_run_and_deduct_explain_what_they_need(
    clerk_env: str, case_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = clerk("run", "sweeep")
    assert code == 2 and "name: 'sweeep' is not a flow: use one of sweep, collect, watch" in err
    assert clerk("cases", "import", str(case_file))[0] == 0
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "")
    code, _, err = clerk("deduct", CASE)
    assert code == 2 and "Missing option '--requested-by'" in err
    code, _, err = clerk("deduct", CASE, "--requested-by", "李法官")
    assert code == 2 and "no Prefect server answers at" in err
    assert "a deduction waits for a judge on one; start `clerk serve`" in err
    code, _, err = clerk("query", CASE, "--requested-by", "王五")
    assert code == 2 and "requested_by: 王五 may not query this case: neither the case's judge" in err
    code, out, _ = clerk("audit", "export", "--case", CASE, "--format", "jsonl")
    # The refusal is on the record under the operator (CLERK_ACTOR), with the name claimed beside it.
    assert "access.refused" in out and "user:tester" in out and '"who": "王五"' in out
    assert "user:王五" not in out
    code, _, err = clerk("approve", "0b7d3c4e-0000-4000-8000-000000000000", "--judge", "王", "--amount", "-5")
    assert code == 2 and "--amount" in err


def test_what_may_never_be_frozen_is_shown_and_only_a_judge_overrides_it(
    clerk_env: str, case_file: Path
) -> None:
    assert clerk("cases", "import", str(case_file))[0] == 0
    code, out, _ = clerk("cases", "show", CASE)
    assert code == 0
    assert (
        "left free: 1101**********002X 2,100.00 yuan: the debtor's living allowance, to keep once deposits "
        "are found (none yet)" in out
    ), out
    code, _, err = clerk("cases", "override", CASE, "allowance", "--reason", "x", "--actor", "某路人")
    assert code == 2 and "--actor: 某路人 may not" in err
    code, _, err = clerk("cases", "override", CASE, "wages", "--reason", "x", "--actor", "李法官")
    assert code == 2 and "exemption: 'wages' is not an exemption: use one of allowance, protected" in err
    code, out, _ = clerk(
        "cases", "override", CASE, "allowance", "--reason", "债务人另有收入", "--actor", "李法官"
    )
    assert code == 0 and "override of the allowance exemption set (audited)" in out
    code, out, _ = clerk("cases", "show", CASE)
    assert "left free" not in out and "overridden by a judge for this case: allowance" in out
    code, out, _ = clerk("audit", "export", "--case", CASE)
    assert code == 0 and "case.override_set" in out and "债务人另有收入" in out


def test_an_outsider_checks_an_export_with_the_public_key_alone(
    clerk_env: str, case_file: Path, tmp_path: Path
) -> None:
    """The court exports a case with proofs and publishes its key and a head; a lawyer checks the file
    with `check-export` and no database, and catches an edit; a consistency proof shows the log grew."""
    assert clerk("cases", "import", str(case_file))[0] == 0
    code, out, _ = clerk("audit", "sequence")
    assert code == 0 and "2 event(s) placed; the log holds 2" in out  # the case, the file
    code, out, _ = clerk("audit", "heads", "--json")
    kept = tmp_path / "kept-head.json"
    kept.write_text(out.splitlines()[0])
    assert clerk("cases", "pay", CASE, "1000", "--on", "2024-06-01", "--actor", "李法官")[0] == 0

    export, key = tmp_path / "case.json", tmp_path / "court.pem"
    code, _, err = clerk("audit", "export", "--case", CASE, "--since", str(kept), "-o", str(export))
    assert code == 0 and "2 event(s) exported" in err  # the import and the payment; placed first
    code, out, _ = clerk("audit", "public-key")
    key.write_text(out)
    assert (tmp_path / "var" / "audit-signing.key").stat().st_mode & 0o077 == 0

    def check(*extra: str) -> tuple[int, str, str]:
        return clerk("audit", "check-export", str(export), "--public-key", str(key), *extra)

    code, out, _ = check("--expect-head", str(kept))
    assert code == 0 and "verified: 2 event(s) of （2024）豫0185执1234号 against the signed head 3:" in out
    assert "complete: every event of the case under that head, in log order, and no other" in out

    document = json.loads(export.read_text())
    whole = json.dumps(document)
    document["events"].pop(0)
    export.write_text(json.dumps(document))
    code, _, err = check()
    assert code == 1 and "the case has 2 event(s) under the head, the export lists 1: 1 missing" in err
    document = json.loads(whole)
    document["events"][1]["payload"] = document["events"][1]["payload"].replace("1000", "100")
    export.write_text(json.dumps(document))
    code, _, err = check()
    assert code == 1 and "NOT verified" in err and "edited" in err

    code, out, _ = clerk("audit", "verify", "--expect-head", str(kept))
    assert code == 0 and "3 event(s), 3 in the tree, 0 waiting" in out and "2 signed head(s) checked" in out
    assert "per-case index rebuilt from the log: 1 case(s); every v2 head's index root matches" in out
    proof = tmp_path / "grew.json"
    code, out, _ = clerk("audit", "consistency", "2", "latest", "-o", str(proof))
    assert code == 0 and "the log of 3 event(s) extends the one of 2" in out
    code, out, _ = clerk("audit", "check-export", str(proof), "--public-key", str(key))
    assert code == 0 and "consistency from 2 to 3" in out

    code, _, err = clerk("audit", "check-export", str(case_file), "--public-key", str(key))
    assert code == 2 and "FILE: is not an export" in err
    code, _, err = clerk("audit", "verify", "--expect-head", "three")
    assert code == 2 and "--expect-head: 'three' is not a head" in err


def test_cases_list_pages_and_says_what_it_left_out(clerk_env: str) -> None:
    from cli import SAMPLE_CASES

    assert clerk("cases", "import", str(SAMPLE_CASES))[0] == 0
    code, out, err = clerk("cases", "list", "--limit", "5")
    assert code == 0 and len([line for line in out.splitlines() if "执" in line]) == 5
    assert "5 of 40 case(s); --limit N or --all for more" in err
    code, out, err = clerk("cases", "list", "--all")
    assert len([line for line in out.splitlines() if "执" in line]) == 40 and "40 of 40 case(s)" in err
    assert all(cell_len(line) <= 80 for line in out.splitlines()), "fits 80 columns (CJK: two each)"


@pytest.mark.parametrize(
    ("host", "auth", "refused"),
    [
        ("127.0.0.1", None, False),
        ("127.0.0.2", None, False),
        ("::1", None, False),
        ("localhost", None, False),
        ("0.0.0.0", None, True),
        ("10.20.30.40", None, True),
        ("court.example", None, True),
        ("0.0.0.0", "nopassword", True),
        ("0.0.0.0", "clerk:s3cret", False),
    ],
)
def test_a_server_listens_beyond_this_machine_only_with_the_apis_auth(
    host: str, auth: str | None, refused: bool
) -> None:
    from deployments.embedded import listen_refusal

    assert (listen_refusal(host, auth) is not None) is refused


def test_serve_refuses_to_listen_beyond_loopback_without_auth_before_starting_anything(
    clerk_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    code, out, err = clerk("serve", "--host", "0.0.0.0")
    assert code == 2, out + err
    assert (
        "error: --host: listening on 0.0.0.0 reaches beyond this machine: set the API's basic auth"
        in " ".join(err.split())
    )
    assert "starting a Prefect server" not in out


def test_approve_with_a_key_signs_exactly_what_the_paused_run_asks_and_refuses_too_much_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`clerk approve --key` against a Prefect server's REST API (respx): it reads the case and the form's
    ceiling from the paused run, refuses an amount above it before sending anything, and otherwise sends a
    signature that proves exactly this run, case, person, verdict and amount."""
    import json as jsonlib

    import respx
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from httpx import Response

    from models import proof

    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "judge.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    run = "0b7d3c4e-0000-4000-8000-000000000001"
    api = "http://127.0.0.1:1/api"
    monkeypatch.setenv("PREFECT_API_URL", api)
    paused = {
        "id": run,
        "parameters": {"case_number": "(2024)豫0185执1234号", "requested_by": "李法官"},
        "state": {
            "type": "PAUSED",
            "name": "Paused",
            "state_details": {
                "pause_key": "deduction-decision",
                "run_input_keyset": {"schema": "paused-deduction-decision-schema"},
            },
        },
    }
    done = {"id": run, "state": {"type": "COMPLETED", "name": "Completed", "message": "moved"}}
    schema = {"properties": {"amount_yuan": {"type": "number", "maximum": 1234.5}}}
    sent: list[dict[str, object]] = []
    with respx.mock(base_url=api, assert_all_called=False) as mock:
        states = iter([paused, paused, done])
        mock.get(f"/flow_runs/{run}").mock(side_effect=lambda _: Response(200, json=next(states)))
        mock.get(f"/flow_runs/{run}/input/paused-deduction-decision-schema").mock(
            return_value=Response(200, text=jsonlib.dumps(schema))
        )

        def resume(request: object) -> Response:
            sent.append(jsonlib.loads(request.content)["run_input"])  # type: ignore[attr-defined]
            return Response(200, json={"status": "ACCEPT"})

        mock.post(f"/flow_runs/{run}/resume").mock(side_effect=resume)
        too_much = clerk("approve", run, "--judge", "钱局长", "--key", str(key_file), "--amount", "1234.51")
        assert (
            too_much[0] == 2
            and "--amount: 1,234.51 yuan is more than the 1,234.50 yuan proposed" in too_much[2]
        )
        assert sent == []
        code, out, err = clerk("approve", run, "--judge", "钱局长", "--key", str(key_file))
    assert code == 0, out + err
    assert "Completed: moved" in out
    [decision] = sent
    assert decision["decision"] == "approve" and "code" not in decision
    bound = proof.Binding(run, "（2024）豫0185执1234号", "钱局长", True, 123_450)  # all that was proposed
    assert proof.check_signature(key.public_key(), bound, str(decision["signature"])) is None


def test_approve_with_no_server_answering_says_what_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.simulator.serve import free_loopback_ports

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_loopback_ports(1)[0]}/api")
    code, _, err = clerk(
        "approve", "0b7d3c4e-0000-4000-8000-000000000001", "--judge", "王", "--code", "123456"
    )
    assert (
        code == 1 and "no Prefect server answers at http://127.0.0.1:" in err and "start `clerk serve`" in err
    )
