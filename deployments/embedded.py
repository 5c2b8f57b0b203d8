"""The clerk on one machine: the demo, and `clerk serve` (a local Prefect server and every deployment).

`clerk serve` starts a Prefect server on 127.0.0.1 (`deployments/prefect_app.py`: Prefect's own app, trying
a request its SQLite refused as busy again before answering 503) unless PREFECT_API_URL names a server
(Prefect's temporary in-process server runs no scheduler), serves the deployments with their schedules,
prints where the UI is, and stops everything on Ctrl-C or SIGTERM. Production runs the same flows from
`prefect.yaml` on a process work pool instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clerk.casebook import cases
from clerk.casebook.casefile import write_case_file
from clerk.lifecycle.deduction import HOLDING_MONEY, start_deduction
from clerk.money.view import BureauMoney, bureau_money
from clerk.settings import Settings, get_settings
from clerk.store import db
from clerk.supervision import reports
from connectors.config import registries_json, simulated_registries
from connectors.simulator.faults import FaultPlan
from connectors.simulator.serve import SimulatedWorld, build_world, world_in_background
from connectors.simulator.sms import SmsGatewaySimulator
from connectors.simulator.world import case_rows
from deployments import catalog
from deployments.catalog import TIMEZONE
from models.status import CaseStatus
from models.tables import Case, ControlMeasure, Subaccount
from models.values import InvalidValue


@dataclass(frozen=True)
class DemoReport(reports.BookTotals):
    seconds: float
    sweep_message: str
    money: BureauMoney | None = None
    money_messages: tuple[str, ...] = ()
    paid_by_transfer: str | None = None  # a case a debtor's own transfer paid, for `clerk money show`


@contextlib.contextmanager
def _settings_env(**values: str) -> Iterator[Settings]:
    """Settings with these CLERK_ variables set, for the duration of the block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


#: How a slow registry answers in the demo: a share of requests "accepted, the answer later", never collected
#: within the demo; the scoreboard shows them open, and late once 24 hours pass.
SLOW_DEMO = FaultPlan(seed=7, later=0.1)


def run_demo(
    sample_file: Path,
    debtors: int,
    seed: int,
    say: Callable[[str], None],
    import_cases: Callable[[Path], object],
    slow: Sequence[str] = (),
) -> DemoReport:
    """Start the simulators with a seeded world, import the sample cases and the world's cases, sweep, and
    report from the case book. The registries named in `slow` answer a share of lookups only later
    (`SLOW_DEMO`), as a registry that breaks the 24-hour rule does."""
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    world = build_world(simulated_registries(), debtors, seed, now)
    simulators = {sim.code: sim for sim, _, _ in world.simulators}
    unknown = sorted(set(slow) - set(simulators))
    if unknown:
        raise InvalidValue("--slow", f"no registry {', '.join(unknown)}: use {', '.join(simulators)}")
    for code in slow:
        simulators[code].faults = SLOW_DEMO
    say(f"simulators: {len(world.simulators)} registries, {debtors:,} debtors (seed {seed})")
    if slow:
        say(
            f"slow on purpose: {', '.join(slow)} answer {SLOW_DEMO.later:.0%} of their requests (a batch of "
            "debtors' lookups, or a freeze or seizure) only later"
        )
    case_file = get_settings().data_dir / f"demo-cases-{seed}.csv"
    case_file.parent.mkdir(parents=True, exist_ok=True)
    write_case_file(case_file, case_rows(world.debtors, seed, now.date()))
    with (
        world_in_background(world) as configs,
        _settings_env(
            CLERK_REGISTRIES=registries_json(configs),
            CLERK_NOTIFIER_URL=world.sms_url or "",
            CLERK_COURT_BANK_URL=world.court_bank_url or "",
        ) as conf,
    ):
        for path in (sample_file, case_file):
            import_cases(path)
        say("sweeping every registry for every due debtor (Prefect flow 'sweep')…")
        from flows import runtime  # Prefect is imported only when a flow runs
        from flows.sweep import sweep

        state = runtime.run(sweep(return_state=True), "sweeping every due debtor")
        money, messages, example = _money(world, conf, say)
        report = _report(conf, started, state.message or state.name or "")
    return replace(report, money=money, money_messages=messages, paid_by_transfer=example)


#: Case money in the demo: deductions judges approve, debtors who pay on their own, money nobody can place.
DEMO_DEDUCTIONS = 5
DEMO_TRANSFERS = 8
DEMO_UNIDENTIFIED = 2


def _money(
    world: SimulatedWorld, conf: Settings, say: Callable[[str], None]
) -> tuple[BureauMoney, tuple[str, ...], str | None]:
    """Case money (案款) after the sweep: a sub-account per case; the judges of a few cases with money frozen
    approve its deduction (the decision the Resume form in the UI gives), the banks pay it to the case's
    sub-account; a few debtors pay on their own (one of them all they owe), two credits nobody can place;
    the statement read, split and reconciled."""
    from flows import runtime  # Prefect is imported only when a flow runs
    from flows.money import money_reconcile, money_statement

    messages = []
    state = runtime.run(money_statement(return_state=True), "opening a sub-account per case (一案一账号)")
    messages.append(f"sub-accounts: {state.message}")
    say(f"judges of {DEMO_DEDUCTIONS} cases approve their deductions, with the code the SMS brings…")
    approved = asyncio.run(_judges_approve(DEMO_DEDUCTIONS, world.sms))
    sessions = db.session_factory(db.engine_for(conf.effective_database_url))
    payers = db.reading(sessions, _running_with_subaccounts, DEMO_TRANSFERS, approved)
    rng = random.Random(len(payers))  # noqa: S311 - made-up amounts, not secrets
    for i, (number, subaccount, owed) in enumerate(payers):
        amount = owed if i == 0 else max(owed * rng.randrange(5, 40) // 100, 100)
        world.court_bank.credit(amount, subaccount, payer_name="债务人", remittance=f"还款 {number}")
    for i in range(DEMO_UNIDENTIFIED):  # nobody said for which case
        world.court_bank.credit(rng.randrange(100, 5_000) * 100, None if i == 0 else "95588000000099999999",
                                payer_name="案外人", remittance="执行款")  # fmt: skip
    say("reading the court's bank statement (Prefect flow 'money-statement')…")
    state = runtime.run(money_statement(return_state=True), "reading the court's bank statement")
    messages.append(f"statement: {state.message}")
    state = runtime.run(money_reconcile(return_state=True), "reconciling the bank and the journal")
    messages.append(f"reconciliation: {state.message}")
    money = db.reading(sessions, bureau_money)
    return money, tuple(messages), payers[0][0] if payers else None


async def _judges_approve(count: int, phone: SmsGatewaySimulator) -> list[str]:
    """Each chosen case's deduction proposed and approved in full by its judge, as `flows/deduction.py`
    does once the judge's decision comes: the same use cases. The judge proves the decision as in the
    Resume form: decided once without a code (one is sent), then again with the code read off the phone
    (the simulated SMS gateway)."""
    from clerk.lifecycle.decision import Accepted, Decision, Verdict, carry_out, weigh
    from clerk.lifecycle.proof import Offered, Prover
    from flows import runtime

    done = []
    async with runtime.opened() as rt:
        prover = Prover.of(rt.settings, rt.notifier)
        for number, judge in await db.read(rt.sessions, _frozen_with_money, count):
            proposal = await db.run(
                rt.sessions, start_deduction, rt.ctx, number, judge, rt.settings.access, None
            )
            if not proposal.lines:
                continue
            run = f"demo-{uuid.uuid4()}"  # what waits for this decision: no Prefect run here
            weighed = await weigh(rt.ctx, proposal, Decision(judge, True), rt.settings.access, prover, run)
            codes = phone.codes(number)  # what the judge reads on the phone
            if isinstance(weighed, str) and codes:
                decision = Decision(judge, True, offered=Offered(code=codes[-1]))
                weighed = await weigh(rt.ctx, proposal, decision, rt.settings.access, prover, run)
            if not isinstance(weighed, Accepted):
                continue
            if (await carry_out(rt.ctx, proposal, weighed, 0)).verdict == Verdict.APPROVED:
                done.append(number)
    return done


def _frozen_with_money(session: Session, count: int) -> list[tuple[str, str]]:
    rows = session.execute(
        select(Case.case_number, Case.judge)
        .join(ControlMeasure, ControlMeasure.case_id == Case.id)
        .where(Case.status == CaseStatus.ACTIVE, *HOLDING_MONEY)
        .group_by(Case.case_number, Case.judge)
        .order_by(Case.case_number)
        .limit(count)
    )
    return [(number, judge) for number, judge in rows]


def _running_with_subaccounts(session: Session, count: int, besides: list[str]) -> list[tuple[str, str, int]]:
    """Cases still owing, with a sub-account, other than `besides`: (case number, sub-account, owed)."""
    today = dt.datetime.now(dt.UTC).date()
    found = []
    for case, number in session.execute(
        select(Case, Subaccount.number)
        .join(Subaccount, Subaccount.case_id == Case.id)
        .where(Case.status == CaseStatus.ACTIVE, Case.case_number.not_in(besides))
        .order_by(Case.id.desc())
        .limit(count)
    ):
        owed = cases.owed(case, today).remaining
        if owed > 0:
            found.append((case.case_number, number, owed))
    return found


def _report(conf: Settings, started: float, message: str) -> DemoReport:
    sessions = db.session_factory(db.engine_for(conf.effective_database_url))
    totals = db.reading(sessions, reports.book_totals)
    return DemoReport(**asdict(totals), seconds=time.perf_counter() - started, sweep_message=message)


# --- clerk serve --------------------------------------------------------------------------------------


def prefect_healthy(api_url: str, auth: str | None = None) -> bool:
    """Whether the Prefect API at `api_url` answers its health check (`auth`: "user:password" of a server
    with basic auth)."""
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    request = urllib.request.Request(f"{api_url}/health", headers=headers)  # noqa: S310 - loopback URL
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback URL
            return bool(response.status == 200)
    except OSError:
        return False


#: Where a server listens unless told otherwise: this machine only.
LOOPBACK = "127.0.0.1"


def listen_refusal(host: str, auth: str | None) -> str | None:
    """Why a server may not listen on `host`: beyond this machine only with the API's basic auth set (the
    Prefect UI and API otherwise let anyone on the network start any run). None when it may."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback or (auth and ":" in auth):
        return None
    return (
        f"listening on {host} reaches beyond this machine: set the API's basic auth first "
        "(PREFECT_SERVER_API_AUTH_STRING=user:password here, PREFECT_API_AUTH_STRING the same for clients) "
        "and put TLS in front (docs/runbook.md, 'Who can do what')"
    )


def local_url(host: str, port: int) -> str:
    """The API's URL for processes on this machine: a server on every address answers on 127.0.0.1."""
    reach = LOOPBACK if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - the names of every address
    return f"http://{reach}:{port}/api"


#: The Prefect server the clerk runs (Prefect's app behind `RetryBusy`), and Prefect's own as it ships.
SERVER_ENTRY = ("deployments.prefect_app",)
PREFECT_SERVER_START = ("prefect", "server", "start")


@contextlib.contextmanager
def prefect_server(
    port: int,
    say: Callable[[str], None],
    timeout_s: float = 120,
    entry: Sequence[str] = SERVER_ENTRY,
    host: str = LOOPBACK,
) -> Iterator[str]:
    """A Prefect server on 127.0.0.1 (SQLite under PREFECT_HOME), unless PREFECT_API_URL names one already;
    `entry` is the module to run with its arguments (`PREFECT_SERVER_START` for Prefect's own, as shipped).
    On another `host` only with the API's basic auth set (`listen_refusal`: InvalidValue naming --host).

    Its output goes to `server.log` under PREFECT_HOME, appended: a pipe nobody reads fills after 64 KB and
    then stops the server at its next log line (it logs a traceback for each failed request, e.g. SQLite's
    "database is locked", PrefectHQ/prefect#18934)."""
    named = os.environ.get("PREFECT_API_URL")
    if named:
        say(f"using the Prefect server at {named}")
        yield named
        return
    auth = os.environ.get("PREFECT_SERVER_API_AUTH_STRING")
    refusal = listen_refusal(host, auth)
    if refusal:
        raise InvalidValue("--host", refusal)
    api_url = local_url(host, port)
    env = os.environ | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if host == LOOPBACK:
        env["PREFECT_UI_API_URL"] = api_url
    if auth:  # this process's clients (the runner) authenticate as the server asks
        os.environ.setdefault("PREFECT_API_AUTH_STRING", auth)
    log = server_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        start = output.tell()
        server = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", *entry, "--host", host, "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C at the terminal reaches the runner, which then cancels the runs in
            # flight through this server; it is stopped last, below.
            start_new_session=True,
        )
    try:
        say(f"starting a Prefect server on {host}:{port} (about 20 s; its log: {log})…")
        deadline = time.monotonic() + timeout_s
        while not prefect_healthy(api_url, auth):
            if server.poll() is not None:
                raise RuntimeError(f"the Prefect server stopped: {_tail(log, start)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not answer within {timeout_s:.0f} s (see {log})")
            time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = api_url
        yield api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None) if not named else None
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


async def until_stopped(runner: Any, say: Callable[[str], None]) -> None:
    """Run the runner until SIGTERM (`clerk down`, systemd) or SIGINT (Ctrl-C): then it stops asking for
    runs and cancels the runs in flight (each Cancelled, "Runner is shutting down.", its process ended: a
    collect run resumes what a cancelled run had sent, by its keys), and returns. Prefect's own SIGTERM
    handler would exit in the middle of the loop instead, leaving a running run Crashed with tracebacks."""
    loop = asyncio.get_running_loop()
    started = asyncio.ensure_future(runner.start())
    await asyncio.sleep(0)  # runner.start() has installed its SIGTERM handler: ours replace it
    stopping: list[asyncio.Future[Any]] = []

    def stop(name: str) -> None:
        if stopping:
            return
        say(f"{name}: stopping; the runs in flight are cancelled (the UI says so)")
        if runner.started:
            stopping.append(asyncio.ensure_future(runner.astop()))
        else:
            started.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        await started
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if stopping:
        await stopping[0]


def server_log() -> Path:
    """Where the embedded Prefect server's output goes: `server.log` in PREFECT_HOME (Prefect's default
    `~/.prefect`). Read from the environment, not through Prefect's settings: importing Prefect here, before
    PREFECT_API_URL names the server, would fix a process's settings without it (its client would then start
    a temporary server of its own)."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser() / "server.log"


def _tail(log: Path, start: int, size: int = 500) -> str:
    """The last `size` characters the server wrote since `start`."""
    with log.open("rb") as f:
        f.seek(max(start, f.seek(0, os.SEEK_END) - size))
        return f.read().decode(errors="replace").strip() or "(it wrote nothing)"


def serve_all(
    conf: Settings, api_url: str, say: Callable[[str], None], only: Sequence[str] | None = None
) -> None:
    """Serve every deployment (or those named in `only`), with its schedule, against the server at
    `api_url`, until interrupted.

    The flows are given to the runner as flow objects (`Runner.add_flow`), not as deployments alone (what
    `prefect.serve` does): a runner that holds the flow starts each run from it in a child process
    (`run_flow_in_subprocess`, which deployments/forkserver.py makes a fork of a warm interpreter), where
    one that holds only the deployment starts `python -m prefect.engine`, which imports everything afresh
    and loads the flow from its file: 3.7 s before a judge's case query begins."""
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner
    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.forkserver import start_runs_by_fork_server

    served = [d for d in catalog.SERVED if not only or d.name in only]
    flows = {d.name: d.flow() for d in served}
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        runner = Runner(pause_on_shutdown=False, query_seconds=conf.runner_poll_s)
        for d in served:
            runner.add_flow(
                flows[d.name],
                name=d.name,
                schedules=[Cron(getattr(conf, d.serve_cron), timezone=TIMEZONE, slug=d.name)]
                if d.serve_cron
                else None,
                description=d.description,
                tags=list(d.tags),
            )
        crons = [f"{d.name} ({getattr(conf, d.serve_cron)})" for d in served if d.serve_cron]
        on_demand = [d.name for d in served if not d.serve_cron]
        # Each run a fork of a process that has imported the flows already: ~10 ms to start, not 3 s.
        forks = start_runs_by_fork_server(sorted({flow.fn.__module__ for flow in flows.values()}))
        say(
            f"serving deployments {', '.join(crons + on_demand)} ({TIMEZONE}), looking for runs every "
            f"{conf.runner_poll_s:g} s; each run starts as a fork of process {forks}; Ctrl-C to stop"
        )
        with contextlib.suppress(KeyboardInterrupt, TerminationSignal):
            asyncio.run(until_stopped(runner, say))
