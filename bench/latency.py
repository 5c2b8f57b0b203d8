"""On-demand latency: how long a judge waits for a case query, p50 and p95, side by side:

- `clerk query CASE --requested-by JUDGE` on the command line, its two routes: with `clerk serve` serving
  the case-query deployment, a run of it started and followed through the server's REST API (the command
  imports typer, rich and httpx, not Prefect: cli/query.py); with nothing serving it, the flow in
  the command's own process (Python, Prefect and the clerk start, then the flow runs there), recorded on
  the running server;
- `prefect deployment run case-query/case-query -p … --watch` against a served deployment (`clerk serve
  --only case-query`): the CLI asks the server for a run, the runner starts it in a process of its own, the
  CLI watches it to its end;
- the same run started through Prefect's API (`arun_deployment`, what the UI's Run button does), timed from
  the call to the finished run.

Set-up: five simulated registries (`clerk sim`), a fresh SQLite case book with the world's cases, a Prefect
server on 127.0.0.1 (SQLite, as `clerk serve` starts it). Each query is of a different case, asked by its
judge, with controls on (freezes placed where a debtor has money).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import select

from bench.common import ClientRetries, machine_cpu_s, p95, record, run_module, server_retries, serving, table
from bench.sweep import clerk_env, configs, import_cases, simulators
from clerk.store import db
from connectors.simulator.serve import free_loopback_ports
from deployments.embedded import prefect_server, server_log
from models.tables import Case

DEPLOYMENT = "case-query/case-query"
#: How often the polling wait reads the run.
POLL_S = 0.1
#: Where the Prefect server keeps its state: SQLite as `clerk serve` starts it, PostgreSQL as `clerk up` does.
PREFECT_DATABASES = ("sqlite", "postgresql")
#: How often `clerk serve`'s runner asks for runs to start (CLERK_RUNNER_POLL_S): the API runs are measured at
#: each, side by side; the command-line ways at the first only. --quick: the default (the last) only.
RUNNER_POLLS_S = (1.0, 0.25)
#: While `clerk serve` waits for work, before the runs: how long it is left to settle (its start, the
#: server's answers to it), then how long the machine's CPU is measured (a quarter of each in --quick).
SETTLE_S, QUIET_S = 15.0, 20.0


def _cases(database_url: str, count: int) -> list[tuple[str, str]]:
    """(case number, judge) of `count` active cases."""
    sessions = db.session_factory(db.engine_for(database_url))
    with sessions() as session:
        rows = session.execute(
            select(Case.case_number, Case.judge).where(Case.status == "active").order_by(Case.id).limit(count)
        )
        return [(number, judge) for number, judge in rows]


def _timed(args: list[str], env: dict[str, str]) -> float:
    return run_module(args, env, timeout=300)[0]


async def _via_api(
    api_url: str, cases: list[tuple[str, str]]
) -> tuple[list[float], list[float], list[dict[str, float]], list[str]]:
    """Start each run through Prefect's API and wait for its end two ways at once: by Prefect's events
    (`wait_for_flow_run`) and by reading the run every `POLL_S` (what a page or a script that polls
    sees). Both waits watch the same run, so the two are compared run by run; then the run's states say
    where the time went."""
    from prefect.client.orchestration import get_client
    from prefect.deployments.flow_runs import arun_deployment
    from prefect.flow_runs import wait_for_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    by_events, by_polling, phases = [], [], []
    retries = ClientRetries()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(retries.listening())
        # This process imported Prefect's settings with the first server's address; say which server now.
        stack.enter_context(temporary_settings({PREFECT_API_URL: api_url}))
        client = await stack.enter_async_context(get_client())

        async def polled(run_id: Any) -> float:
            while True:
                run = await client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    return time.perf_counter()
                await asyncio.sleep(POLL_S)

        async def seen(run_id: Any) -> tuple[float, Any]:
            run = await wait_for_flow_run(run_id, timeout=300, client=client)
            return time.perf_counter(), run

        for number, judge in cases:
            started = time.perf_counter()
            run = await arun_deployment(
                DEPLOYMENT, parameters={"case_number": number, "requested_by": judge}, timeout=0
            )
            asked = time.perf_counter() - started
            async with asyncio.timeout(300):
                (event_at, run), poll_at = await asyncio.gather(seen(run.id), polled(run.id))
            if run.state is None or not run.state.is_final():
                # The final state's event can arrive before the state reads back (wait_for_flow_run then
                # returns the run as it read it, Running); the polling wait has seen it final by now.
                run = await client.read_flow_run(run.id)
            if run.state is None or not run.state.is_completed():
                raise RuntimeError(f"a case query ended {run.state.name if run.state else 'without a state'}")
            by_events.append(event_at - started)
            by_polling.append(poll_at - started)
            phase = _phases(await client.read_flow_run_states(run.id))
            # What no state accounts for: the call that creates the run, and the wait to learn of its end.
            ran = sum(phase.values())
            phase["asked (creating the run)"] = asked
            phase["seen (events)"] = by_events[-1] - ran - asked
            phase["seen (polling)"] = by_polling[-1] - ran - asked
            phases.append(phase)
    return by_events, by_polling, phases, retries.reasons


def _server_errors(log: Path) -> list[str]:
    """The Prefect server's logged errors, each with the last line of its traceback (the exception), and how
    many times each came."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors: collections.Counter[str] = collections.Counter()
    for i, line in enumerate(lines):
        if "| ERROR" not in line:
            continue
        message, exception = line.split("|")[-1].strip()[:80], ""
        for following in lines[i + 1 :]:
            if " | " in following[:40]:  # the next log record
                break
            exception = following.strip() or exception
        errors[f"{message} {exception[:160]}".strip()] += 1
    return [f"{count} × {text}" for text, count in errors.most_common(5)]


def _phases(states: list[Any]) -> dict[str, float]:
    """Seconds from the run's creation to the runner taking it (Pending), to the flow starting in its new
    process (Running), and to its end (Completed)."""
    at: dict[str, Any] = {}
    for state in sorted(states, key=lambda s: s.timestamp):
        at.setdefault(state.type.value, state.timestamp)
    created = at["SCHEDULED"]
    return {
        "picked up": (at["PENDING"] - created).total_seconds(),
        "process start": (at["RUNNING"] - at["PENDING"]).total_seconds(),
        "flow": (at["COMPLETED"] - at["RUNNING"]).total_seconds(),
    }


def _row(how: str, times: list[float], goal: float | None) -> dict[str, Any]:
    ordered = sorted(times)
    tail = p95(times)
    return {
        "how": how,
        "runs": len(times),
        "p50 s": round(statistics.median(ordered), 2),
        "p95 s": round(tail, 2),
        "max s": round(ordered[-1], 2),
        "goal s": goal if goal is not None else "-",
        "met": "-" if goal is None else ("yes" if tail < goal else "no"),
    }


def run(quick: bool = False) -> None:
    runs = 2 if quick else 20
    regs = configs()
    rows: list[dict[str, Any]] = []
    where: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        url = f"sqlite:///{tmp}/clerk.db"
        env = clerk_env(url, regs) | {"CLERK_DATA_DIR": f"{tmp}/var"}
        with simulators(300, Path(tmp), regs) as served:
            import_cases(env, served.case_file)
            polls = RUNNER_POLLS_S[-1:] if quick else RUNNER_POLLS_S
            cases = iter(_cases(url, (5 + 3 * (len(polls) - 1)) * runs))
            for database in PREFECT_DATABASES:
                retried = []
                with _prefect(database, Path(tmp)) as (api_url, log):
                    env |= {"PREFECT_API_URL": api_url, "PREFECT_HOME": str(log.parent)}
                    for poll in polls:
                        # The command-line ways on the embedded default only (the server's database is not
                        # theirs): `clerk query` on the served deployment at every poll, the others at the
                        # first only.
                        judge = database == "sqlite"
                        cli = judge and poll == polls[0]
                        picked = [next(cases) for _ in range((4 if cli else 2 if judge else 1) * runs)]
                        measured, phases, more, cost = _measure(
                            env, picked, runs, database, poll=poll, cli=cli, judge=judge, quick=quick
                        )
                        rows += measured
                        where += phases
                        retried += more
                        costs.append(cost)
                    errors, tried_again = _server_errors(log), server_retries(log)
                notes.append(
                    {
                        "prefect on": database,
                        "client retries": retried,
                        "server retries": tried_again,
                        "server errors": errors,
                    }
                )
    table(
        f"on-demand case query, from the command to the printed result ({runs} runs each, "
        "each of a different case; goal: p95 under 3 s from a served deployment)",
        rows,
    )
    table(
        "where a served run's time goes (Prefect's state times, API runs): the runner picking it up "
        "(it asks every CLERK_RUNNER_POLL_S), the run's process starting (a fork of clerk serve's fork "
        "server, deployments/forkserver.py) until the flow runs, the flow itself; and what no state accounts "
        "for: the call that creates the run, and learning of its end",
        where,
    )
    table(
        "what a served deployment costs while it waits for work: the whole machine's CPU over "
        "a quiet interval (the runner asking for runs every CLERK_RUNNER_POLL_S, the Prefect server and its "
        "database answering; the simulators idle)",
        costs,
    )
    for note in notes:
        retried, errors = note["client retries"], note["server errors"]
        print(
            f"Prefect on {note['prefect on']}: its client retried {len(retried)} request(s) of the API runs"
            + "".join(f"\n  {count} × {reason}" for reason, count in collections.Counter(retried).items())
            + f"\n  the server tried {note['server retries']} request(s) again itself (its database busy)"
            + "\n  the server logged "
            + ("\n    ".join(["these errors:", *errors]) if errors else "no error")
        )
    record("latency", rows + where + costs + notes, quick=quick)


@contextlib.contextmanager
def _prefect(database: str, tmp: Path) -> Iterator[tuple[str, Path]]:
    """A Prefect server as `clerk serve` starts it, on SQLite (the embedded default) or on a throwaway
    PostgreSQL (as `clerk up` runs it); yields its API's address and its log."""
    from deployments.pgserver import postgres_server

    home = tmp / f"prefect-{database}"
    # The server logs each request its database refuses as busy (it tries it again itself, then answers 503
    # and its client waits 2 s and asks again).
    settings = {"PREFECT_HOME": str(home), "PREFECT_API_LOG_RETRYABLE_ERRORS": "true"}
    with contextlib.ExitStack() as stack:
        if database == "postgresql":
            pg = stack.enter_context(postgres_server(durable=True))
            pg.create_database("prefect")
            settings["PREFECT_API_DATABASE_CONNECTION_URL"] = pg.url("prefect", driver="asyncpg")
        stack.enter_context(mock.patch.dict(os.environ, settings))
        api_url = stack.enter_context(prefect_server(free_loopback_ports(1)[0], lambda _: None))
        yield api_url, server_log()


def _measure(
    env: dict[str, str],
    picked: list[tuple[str, str]],
    runs: int,
    database: str,
    *,
    poll: float,
    cli: bool,
    judge: bool,
    quick: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str], dict[str, Any]]:
    """The case queries of `picked`, `runs` each way, with `clerk serve`'s runner asking every `poll` s: by
    command line (when `cli`), then through the API; and what the machine's CPU spent while `clerk serve`
    waited for work before them."""
    env = env | {"CLERK_RUNNER_POLL_S": f"{poll:g}"}
    served = f"served, Prefect on {database}, runner polls every {poll:g} s"
    rows = []
    if cli:
        queried = [
            _timed(["cli", "query", number, "--requested-by", who], env) for number, who in picked[:runs]
        ]
        rows.append(
            _row("clerk query, nothing serving case-query (the flow in its own process)", queried, None)
        )
    # The console script, as operators start it: a `python -m` main module is run again in every forked run
    # (multiprocessing's rule for module mains); a script main is imported once, by the fork server.
    with serving(
        ["clerk", "serve", "--only", "case-query"], env, "serving deployments", signal.SIGINT, script=True
    ):
        scale = 0.25 if quick else 1.0
        time.sleep(SETTLE_S * scale)
        busy = machine_cpu_s()
        time.sleep(QUIET_S * scale)
        waiting = (machine_cpu_s() - busy) / (QUIET_S * scale)
        if judge:  # the judge's command on the served deployment (cli/query.py)
            on_server = [
                _timed(["cli", "query", number, "--requested-by", who], env)
                for number, who in picked[-2 * runs : -runs]
            ]
            rows.append(_row(f"clerk query, on the served deployment ({served})", on_server, 3.0))
        if cli:
            watched = [
                _timed(
                    [
                        "prefect",
                        "deployment",
                        "run",
                        DEPLOYMENT,
                        "-p",
                        f"case_number={number}",
                        "-p",
                        f"requested_by={who}",
                        "--watch",
                    ],
                    env,
                )
                for number, who in picked[runs : 2 * runs]
            ]
            rows.append(_row(f"prefect deployment run --watch ({served})", watched, 3.0))
        by_events, by_polling, phases, retried = asyncio.run(_via_api(env["PREFECT_API_URL"], picked[-runs:]))
    rows += [
        _row(f"arun_deployment, waiting by Prefect's events ({served})", by_events, 3.0),
        _row(f"the same runs, reading the run every {POLL_S:g} s ({served})", by_polling, 3.0),
    ]
    where = [
        {
            "prefect on": database,
            "runner poll s": poll,
            "phase": name,
            "p50 s": round(statistics.median(p[name] for p in phases), 2),
            "p95 s": round(p95([p[name] for p in phases]), 2),
        }
        for name in phases[0]
    ]
    cost = {
        "prefect on": database,
        "runner poll s": poll,
        "machine CPU while waiting, % of one core": round(100 * waiting, 1),
    }
    return rows, where, retried, cost
