"""A real Prefect server on 127.0.0.1 (SQLite): deployments from prefect.yaml run by a process worker with
parameters from the CLI, and `clerk serve` whose schedule fires and completes a sweep.

Slow (a server, a worker and a runner start here: about two minutes); marked `server`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from clerk.settings import get_settings
from clerk.store import db
from cli import app
from connectors.config import registries_json
from connectors.simulator.serve import free_loopback_ports
from deployments.cluster import alive as pid_alive
from deployments.embedded import prefect_healthy
from models.tables import QueryRun
from tests.world import World, served_world

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOW = dt.datetime.now(dt.UTC)
pytestmark = [
    pytest.mark.server,
    pytest.mark.minutes,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(check, seconds: float, what: str, log: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise AssertionError(f"{what} did not happen within {seconds:.0f} s\n{tail}")


def completed_runs(env: dict[str, str], deployment: str) -> list[tuple[str, str, bool]]:
    code = f"""
import asyncio, json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter
async def main():
    async with get_client() as c:
        runs = await c.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[{deployment!r}])))
        runs = sorted(runs, key=lambda r: r.expected_start_time)  # the earliest first
        print(json.dumps([[str(r.id), r.state.type.value if r.state else "", r.auto_scheduled] for r in runs]))
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return [tuple(run) for run in json.loads(out.stdout.strip().splitlines()[-1])]


CHROMIUM = [
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",
]


def rendered(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, in Debian's headless Chromium (scripts/ensure-chromium)."""
    done = subprocess.run(
        [*CHROMIUM, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def api_json(url: str, body: dict[str, object] | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def check_the_ui_in_a_browser(api: str, tmp_path: Path, sweep_run_id: str) -> None:
    """The case-query run form shows its parameters with their descriptions, and the summary artifact of the
    finished sweep `sweep_run_id` renders (that run's: a later scheduled sweep finds nothing due)."""
    ui = api.removesuffix("/api")
    deployment = api_json(f"{api}/deployments/name/case-query/case-query")
    form = rendered(f"{ui}/deployments/deployment/{deployment['id']}/run", tmp_path / "chromium")  # type: ignore[index]
    for text in (
        "case_number",
        "The case, e.g. (2024)豫0185执1234号",
        "dry_run",
        "Report what would be frozen and seized, and change nothing",
        "requested_by",
    ):
        assert text in form, text
    artifacts = api_json(
        f"{api}/artifacts/filter",
        {
            "artifacts": {"key": {"any_": ["sweep-summary"]}, "flow_run_id": {"any_": [sweep_run_id]}},
            "limit": 1,
        },
    )
    page = rendered(f"{ui}/artifacts/artifact/{artifacts[0]['id']}", tmp_path / "chromium")  # type: ignore[index]
    assert "<h1" in page and "Sweep</h1>" in page
    assert "bank-a: 80 queried" in page


@pytest.fixture
def world(clerk_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with served_world(tmp_path, debtors=80, seed=21, now=NOW) as served:
        registries = registries_json(served.configs)
        monkeypatch.setenv("CLERK_REGISTRIES", registries)
        monkeypatch.setenv("CLERK_NOTIFIER_URL", served.sms_url)
        monkeypatch.setenv("CLERK_COURT_BANK_URL", served.court_bank_url)
        get_settings.cache_clear()
        assert CliRunner().invoke(app, ["cases", "import", str(served.case_file)]).exit_code == 0
        yield served


#: Every deployment of prefect.yaml (flow name/deployment name); `clerk serve` serves the same set but the
#: province sweep's two.
DEPLOYMENTS = [
    "province-sweep/province-sweep",
    "sweep/sweep-shard",
    *(
        f"{name}/{name}"
        for name in (
            "sweep",
            "collect",
            "case-query",
            "watch",
            "renewal",
            "release",
            "deadlines",
            "daily-report",
            "deduction",
        )
    ),
]


def test_deploy_from_prefect_yaml_worker_and_a_schedule_that_fires(
    world: World, clerk_env: str, tmp_path: Path
) -> None:
    port = free_loopback_ports(1)[0]
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ) | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "QUERY_CLERK_HOME": str(ROOT),
        "CLERK_DATABASE_URL": clerk_env,
        "CLERK_SWEEP_CRON": "* * * * *",
    }
    server_log = tmp_path / "server.log"
    with process(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, server_log
    ):
        wait_for(lambda: prefect_healthy(api), 120, "the Prefect server answering", server_log)

        # prefect.yaml: a process work pool, every deployment, a worker that runs a case query from the CLI.
        prefect = str(BIN / "prefect")
        subprocess.run(
            [prefect, "work-pool", "create", "clerk-process", "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
        )
        deployed = subprocess.run(
            [prefect, "--no-prompt", "deploy", "--all"], env=env, cwd=ROOT, capture_output=True, text=True
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        for name in DEPLOYMENTS:
            assert f"Deployment '{name}' successfully created" in deployed.stdout
        first = world.case_file.read_text(encoding="utf-8").splitlines()[1].split(",")
        number, judge = first[0], first[2]
        worker_log = tmp_path / "worker.log"
        with process([prefect, "worker", "start", "--pool", "clerk-process"], env, worker_log):
            ran = subprocess.run(
                [
                    prefect,
                    "deployment",
                    "run",
                    "case-query/case-query",
                    "-p",
                    f"case_number={number}",
                    "-p",
                    f"requested_by={judge}",
                    "-p",
                    "dry_run=true",
                    "--watch",
                    "--watch-timeout",
                    "180",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert ran.returncode == 0, (
                ran.stdout + ran.stderr + worker_log.read_text(errors="replace")[-3000:]
            )
            assert "Flow run finished successfully in 'Completed'" in ran.stdout

        # The two shapes do not mix on one server (served deployments would inherit prefect.yaml's pull
        # steps): clear them, then clerk serve, whose every-minute sweep schedule fires and completes.
        for name in DEPLOYMENTS:
            subprocess.run([prefect, "deployment", "delete", name], env=env, check=True, capture_output=True)
        serve_log = tmp_path / "serve.log"
        with process([str(BIN / "clerk"), "serve"], env, serve_log):
            wait_for(
                lambda: any(state == "COMPLETED" and auto for _, state, auto in completed_runs(env, "sweep")),
                180,
                "a scheduled sweep completing",
                serve_log,
            )
            first = next(
                run for run, state, auto in completed_runs(env, "sweep") if state == "COMPLETED" and auto
            )
            check_the_ui_in_a_browser(api, tmp_path, first)
            # Served runs start as forks of the fork server that `clerk serve` names (deployments/forkserver.py).
            named = re.search(
                r"each run starts as a fork of process (\d+)", serve_log.read_text(errors="replace")
            )
            assert named, serve_log.read_text(errors="replace")[-3000:]
            fork_server = int(named[1])
            with db.session_factory(db.engine_for(clerk_env))() as session:
                served = [r.summary for r in session.scalars(select(QueryRun)) if r.summary]
                parents = {s["parent_pid"] for s in served if s["worker"] is None}  # not the worker's runs
            assert parents == {fork_server}, parents
        wait_for(lambda: not pid_alive(fork_server), 30, "the fork server stopping with clerk serve")
    assert world.holdings_of_debtors() > 0
    assert len(world.ledger_measures()) > 0, "the scheduled sweep placed measures at the simulators"
