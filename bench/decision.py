"""A judge's decision on a deduction against `clerk serve`, p50 and p95, each command as a judge runs it
(a process of its own, `python -m cli`):

- `clerk deduct CASE --requested-by JUDGE`: the deduction started on the served deployment, until the
  command prints what it proposes (the run paused for the decision; REST alone, as `clerk query`);
- `clerk approve RUN --judge JUDGE --amount <above the proposal>`: refused by the command before it reaches
  the run (it reads the form's ceiling from the paused run);
- `clerk approve RUN --judge JUDGE`: no proof, so the run sends a code to the judge's phone (the simulated
  SMS gateway) and asks again;
- `clerk approve RUN --judge JUDGE --code CODE`: the decision proven, the deduction carried out at the
  bank, the run ended: the time a judge waits for "Completed";
- beside it, the yardstick: the same proven decision sent through Prefect's own client
  (`bench.decision_reference`: `resume_flow_run`, then reading the run until it ends), in a process of its
  own, on other cases of the same world.

Set-up: five simulated registries and the SMS gateway (`clerk sim`), a fresh SQLite case book with the
world's cases swept once (freezes in force), a Prefect server on 127.0.0.1 (SQLite, as `clerk serve`
starts it) and `clerk serve --only deduction`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bench.common import ROOT, record, run_module, serving, table
from bench.latency import _prefect, _row
from bench.sweep import clerk_env, configs, import_cases, simulators
from clerk.lifecycle.deduction import HOLDING_MONEY
from clerk.store import db
from cli import served
from connectors.simulator.serve import free_loopback_ports
from models.tables import Case, ControlMeasure

#: The goals: a judge's `clerk approve` with a valid code, and `clerk deduct` (issues 40 and 42), p95.
APPROVE_GOAL_S, DEDUCT_GOAL_S, TOO_MUCH_GOAL_S = 5.0, 5.0, 3.0


def _clerk(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """`python -m cli ARGS`: (seconds, exit code, what it printed)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return time.perf_counter() - started, done.returncode, done.stdout + done.stderr


def _holding_money(database_url: str, count: int) -> list[tuple[str, str]]:
    """(case number, judge) of `count` cases with money frozen."""
    sessions = db.session_factory(db.engine_for(database_url))
    with sessions() as session:
        rows = session.execute(
            select(Case.case_number, Case.judge)
            .join(ControlMeasure, ControlMeasure.case_id == Case.id)
            .where(*HOLDING_MONEY)
            .group_by(Case.case_number, Case.judge)
            .order_by(Case.case_number)
            .limit(count)
        )
        return [(number, judge) for number, judge in rows]


def _paused(api: str, run: str, pause_key: str | None = None, timeout_s: float = 120) -> str:
    """Wait until the run pauses (again: with a pause key other than `pause_key`); its pause key."""
    deadline = time.monotonic() + timeout_s
    with served.Api(api) as client:
        while time.monotonic() < deadline:
            state = (client.flow_run(run) or {}).get("state") or {}
            key = (state.get("state_details") or {}).get("pause_key")
            if state.get("type") == "PAUSED" and key != pause_key:
                return str(key)
            time.sleep(0.1)
    raise RuntimeError(f"the deduction {run} did not pause within {timeout_s:.0f} s")


def _code(notifier: str, case_number: str) -> str:
    messages = httpx.get(f"{notifier}/_sim/messages", timeout=10).json()["messages"]
    codes = [
        m["params"]["code"]
        for m in messages
        if m["template"] == "decision.code" and m["case_no"] == case_number
    ]
    if not codes:
        raise RuntimeError(f"no code reached the judge of {case_number}")
    return str(codes[-1])


def _started(env: dict[str, str], number: str, judge: str) -> tuple[float, str]:
    seconds, code, output = _clerk(["deduct", number, "--requested-by", judge], env)
    found = re.search(r"flow run ([0-9a-f-]{36})", output)
    if code != 0 or not found:
        raise RuntimeError(f"clerk deduct failed ({code}): {output[-1000:]}")
    return seconds, found[1]


def run(quick: bool = False) -> None:
    runs = 1 if quick else 20
    regs = configs()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-decision-") as tmp:
        notifier = f"http://127.0.0.1:{free_loopback_ports(1)[0]}"
        url = f"sqlite:///{tmp}/clerk.db"
        env = clerk_env(url, regs) | {"CLERK_DATA_DIR": f"{tmp}/var", "CLERK_NOTIFIER_URL": notifier}
        with simulators(300, Path(tmp), regs, notifier_url=notifier) as world:
            import_cases(env, world.case_file)
            with _prefect("sqlite", Path(tmp)) as (api_url, _log):
                env |= {"PREFECT_API_URL": api_url}
                run_module(["cli", "run", "sweep"], env, timeout=600)
                cases = _holding_money(url, 2 * runs)
                if len(cases) < 2 * runs:
                    raise RuntimeError(f"{len(cases)} cases hold money; {2 * runs} needed")
                deduct, too_much, unproven, approved, reference = [], [], [], [], []
                with serving(
                    ["clerk", "serve", "--only", "deduction"], env, "serving deployments", script=True
                ):
                    for i, (number, judge) in enumerate(cases):
                        seconds, run_id = _started(env, number, judge)
                        deduct.append(seconds)
                        key = _paused(api_url, run_id)
                        seconds, code, output = _clerk(
                            ["approve", run_id, "--judge", judge, "--amount", "99999999"], env
                        )
                        assert code == 2 and "more than the" in output, output
                        too_much.append(seconds)
                        seconds, code, output = _clerk(["approve", run_id, "--judge", judge], env)
                        assert code == 1 and "a code to approve" in " ".join(output.split()), output
                        unproven.append(seconds)
                        key = _paused(api_url, run_id, key)
                        sms = _code(notifier, number)
                        if i % 2 == 0:
                            seconds, code, output = _clerk(
                                ["approve", run_id, "--judge", judge, "--code", sms], env
                            )
                            assert code == 0 and "Completed" in output, output
                            approved.append(seconds)
                        else:
                            decision = {"decision": "approve", "judge": judge, "code": sms}
                            seconds, output = run_module(
                                [
                                    "bench.decision_reference",
                                    api_url,
                                    run_id,
                                    str(decision).replace("'", '"'),
                                ],
                                env,
                                timeout=300,
                            )
                            assert "COMPLETED" in output, output
                            reference.append(seconds)
    rows = [
        _row("clerk deduct (started, until it shows the proposal)", deduct, DEDUCT_GOAL_S),
        _row("clerk approve --amount above the proposal (refused by the command)", too_much, TOO_MUCH_GOAL_S),
        _row("clerk approve without a code (the run sends one and asks again)", unproven, None),
        _row("clerk approve --code (proven, carried out, the run ended)", approved, APPROVE_GOAL_S),
        _row(
            "the same through Prefect's client (resume_flow_run, read the run till it ends)", reference, None
        ),
    ]
    table(
        f"a judge's decision on a deduction against clerk serve ({runs} cases each way, the proven "
        "decisions alternating between clerk approve and the yardstick)",
        rows,
    )
    record("decision", rows, quick=quick)
