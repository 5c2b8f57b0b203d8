"""What a judge and an operator tripped over (issue 42), each held by a test that failed before the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.terminal import on_a_terminal

ROOT = Path(__file__).resolve().parents[2]


def _on_a_terminal(code: str, home: Path) -> tuple[str, Path]:
    """Run `code` in a fresh interpreter at an operator's terminal, outside CI, PREFECT_HOME at `home`."""
    from prefect._internal.analytics.ci_detection import CI_ENV_VARS

    env = {k: v for k, v in os.environ.items() if k not in CI_ENV_VARS and k != "DO_NOT_TRACK"}
    env |= {"PREFECT_HOME": str(home), "HOME": str(home)}
    exit_code, printed = on_a_terminal([sys.executable, "-c", code], env, ROOT, timeout_s=120)
    assert exit_code == 0, printed[-2000:]
    return printed, home


@pytest.mark.parametrize("clerk_defaults", [True, False], ids=["clerk", "prefect-alone"])
def test_prefect_neither_announces_nor_writes_telemetry_on_an_operators_terminal(
    tmp_path: Path, clerk_defaults: bool
) -> None:
    """Item 5: the clerk's Prefect defaults (set by every entry point before Prefect loads) say DO_NOT_TRACK;
    Prefect alone, on the same terminal, does announce and write (the test can fail)."""
    setup = (
        "from clerk.settings import use_prefect_defaults; use_prefect_defaults(); " if clerk_defaults else ""
    )
    printed, home = _on_a_terminal(setup + "import prefect", tmp_path)
    written = sorted(p.name for p in home.rglob("*") if "telemetry" in p.name)
    if clerk_defaults:
        assert "anonymous usage" not in printed
        assert written == []
    else:
        assert "anonymous usage" in printed or written, (
            "Prefect alone no longer tells: the test holds nothing"
        )


DEDUCTION_RUN = "0b7d3c4e-0000-4000-8000-0000000000d1"
API = "http://127.0.0.1:1/api"


def _deduct_against(states: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """`clerk deduct` against a Prefect server's REST API (respx) whose run goes through `states`."""
    import respx
    from httpx import Response
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("PREFECT_API_URL", API)
    proposal = {"key": "deduction-proposal", "description": "Deduction proposed for （2024）豫0185执1234号"}
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        mock.get("/deployments/name/deduction/deduction").mock(
            return_value=Response(200, json={"id": "d-1", "status": "READY"})
        )
        mock.post("/deployments/d-1/create_flow_run").mock(
            return_value=Response(201, json={"id": DEDUCTION_RUN})
        )
        seen = iter(states)
        mock.get(f"/flow_runs/{DEDUCTION_RUN}").mock(
            side_effect=lambda _: Response(200, json={"id": DEDUCTION_RUN, "state": next(seen)})
        )
        mock.post("/artifacts/filter").mock(return_value=Response(200, json=[proposal]))
        result = CliRunner().invoke(app, ["deduct", "(2024)豫0185执1234号", "--requested-by", "李法官"])
    return result.exit_code, result.stdout, result.stderr


def test_deduct_shows_the_proposal_once_the_run_waits_for_the_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 1: `clerk deduct` talks REST alone and says what is proposed and how to decide."""
    running = {"type": "RUNNING", "name": "Running"}
    paused = {"type": "PAUSED", "name": "Suspended"}
    code, out, err = _deduct_against([running, running, paused], monkeypatch)
    assert code == 0, out + err
    assert f"flow run {DEDUCTION_RUN}" in out and "Deduction proposed for （2024）豫0185执1234号" in out
    assert f"decide with: clerk approve {DEDUCTION_RUN} --judge NAME" in out


def test_deduct_refused_by_the_run_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 7: the run refuses a misspelled judge (and audits it); it ends Refused, the command exits 2."""
    refused = {
        "type": "COMPLETED",
        "name": "Refused",
        "message": "requested_by: 李法宫 may not query this case",
    }
    code, out, err = _deduct_against([{"type": "PENDING", "name": "Pending"}, refused], monkeypatch)
    assert code == 2 and err.startswith("error: requested_by: 李法宫 may not query this case"), out + err
    assert "decide with" not in out


@pytest.mark.parametrize("command", ["query", "deduct", "approve"])
def test_a_judges_commands_load_no_prefect(command: str) -> None:
    """Item 1: the judge's commands on a running server start in a fraction of a second: no Prefect, no
    SQLAlchemy imported (here against a server that does not answer: the one-line error, exit 1 or 2)."""
    from connectors.simulator.serve import free_loopback_ports

    args = {
        "query": ["query", "(2024)豫0185执1234号", "--requested-by", "李法官"],
        "deduct": ["deduct", "(2024)豫0185执1234号", "--requested-by", "李法官"],
        "approve": ["approve", DEDUCTION_RUN, "--judge", "李法官", "--code", "123456"],
    }[command]
    env = os.environ | {"PREFECT_API_URL": f"http://127.0.0.1:{free_loopback_ports(1)[0]}/api"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode in (1, 2) and "error: " in done.stderr, done.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    }
    assert "typer" in imported, "the import log is read (the test can fail)"
    assert not {m for m in imported if m.split(".")[0] in ("prefect", "sqlalchemy")}


def test_a_busy_prefect_server_is_asked_again_as_prefects_client_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`clerk approve` met a 503 from a Prefect server on a busy SQLite (bench decision): the light commands'
    client asks again after a backoff (or the server's Retry-After) while the server says it is busy, and
    gives up with the server's answer after `TRIES`."""
    import respx
    from httpx import Response

    from cli import served

    waited: list[float] = []
    monkeypatch.setattr(served.time, "sleep", waited.append)
    busy = Response(503, json={"exception_message": "Service Unavailable"})
    with respx.mock(base_url=API) as mock:
        route = mock.post(f"/flow_runs/{DEDUCTION_RUN}/resume")
        route.side_effect = [
            busy,
            Response(429, headers={"Retry-After": "3"}),
            Response(200, json={"status": "ACCEPT"}),
        ]
        with served.Api(API) as api:
            assert api.resume(DEDUCTION_RUN, {"decision": "approve"}) is None
        assert route.call_count == 3
        assert 0.25 <= waited[0] <= 0.3 and 3 <= waited[1] <= 3.6, waited
        route.side_effect = None
        route.return_value = busy
        with served.Api(API) as api, pytest.raises(served.ServerError) as failed:
            api.resume(DEDUCTION_RUN, {"decision": "approve"})
    assert failed.value.status == 503 and route.call_count == 3 + served.TRIES
