"""What a flow run needs, opened once per run: settings, the database, the registries' connectors.

Tasks take ids and return counts: personal data never becomes a task argument or result (it would be
hashed into cache keys and could be persisted). They reach the run's context (`clerk.context.Context`:
database, registries, policy, actor, clock) through `current()`, a `ContextVar` the flow sets and Prefect
copies into every task it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from sqlalchemy.orm import Session, sessionmaker

from clerk import querying
from clerk.context import Context
from clerk.settings import Settings, get_settings
from clerk.store import audit, db
from connectors.court_bank import CourtBankConnector
from connectors.http import ClientLimits, RegistryClient
from connectors.loader import build
from connectors.notify import SmsGateway
from flows import limits
from models.status import REFUSED
from models.supervision import CHINA
from models.values import CaseNumber, InvalidValue


@dataclass(frozen=True)
class Runtime:
    """A flow run's settings, its use cases' context, and the SMS gateway (when one is set)."""

    settings: Settings
    ctx: Context
    notifier: SmsGateway | None = None
    court_bank: CourtBankConnector | None = None  # when the settings name one (court_bank_url)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.ctx.sessions

    @property
    def schedule(self) -> querying.Schedule:
        s = self.settings
        return querying.Schedule(s.requery_days, s.terminated_requery_days, s.terminated_years)


_current: ContextVar[Runtime | None] = ContextVar("clerk_runtime", default=None)


def current() -> Runtime:
    """The runtime of the flow run this task belongs to."""
    runtime = _current.get()
    if runtime is None:
        raise RuntimeError("no clerk runtime is open: tasks run inside a clerk flow")
    return runtime


def run_name(prefix: str, *parameters: str) -> Callable[[], str]:
    """A flow run's name that says what it is, for the UI's list of runs: `prefix` (`… dry-run` for a dry
    run), the named parameters' values or, with none, the Beijing time it started:
    `case-query （2026）京0105执10002号 李法官 · (2026)京0105执10002号`, `sweep 08:00`. A case number is
    written in its full-width form and, last, in the half-width form a judge types: the UI's search matches
    a run's name only, character for character. A shard of a province sweep keeps the name the province gave
    it (`shard 2 of 4`, `…, take-over 1`)."""

    def name() -> str:
        values = flow_run.parameters or {}
        if int(values.get("shards") or 1) > 1:
            return str(flow_run.name or f"{prefix} {int(values.get('shard') or 0) + 1} of {values['shards']}")
        parts = [f"{prefix} dry-run" if values.get("dry_run") else prefix]
        typed = ""
        for parameter in parameters:
            value = values.get(parameter)
            if parameter == "case_number" and isinstance(value, str):
                with contextlib.suppress(InvalidValue):
                    value = str(CaseNumber.parse(value))
                    typed = value.replace("（", "(").replace("）", ")")
            if value not in (None, ""):
                parts.append(str(value))
        if not parameters:
            parts.append(dt.datetime.now(CHINA).strftime("%m-%d %H:%M"))
        return " ".join(parts) + (f" · {typed}" if typed else "")

    return name


def refused(exc: Exception) -> State:
    """The final state of a run whose input is refused (a malformed case number, no such case, a person who
    may not ask): Completed by type, named `REFUSED`, its message the one-line error. The refusal itself is
    audited where it is decided; the run is no failure for operators to look into."""
    from prefect.states import Completed

    return Completed(name=REFUSED, message=str(exc))


def was_refused(state: State) -> bool:
    """Whether a run's final state is `refused`'s: an input error, not a failure."""
    return state.is_completed() and state.name == REFUSED


def flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def actor(requested_by: str | None = None) -> str:
    if requested_by:
        return audit.Actor.user(requested_by)
    run_id = flow_run.get_id()
    return audit.Actor.flow_run(str(run_id)) if run_id else audit.Actor.SYSTEM


def check_registries(registries: list[str] | None) -> set[str]:
    """The codes asked for (all of the settings' when none), or InvalidValue naming the unknown ones."""
    return get_settings().registry_codes(registries)


@contextlib.asynccontextmanager
async def opened(
    registries: list[str] | None = None, requested_by: str | None = None
) -> AsyncIterator[Runtime]:
    """Open the run's runtime; `registries` narrows the settings' registries to those codes."""
    settings = get_settings()
    configs = [c for c in settings.registries if c.code in check_registries(registries)]
    engine = await asyncio.to_thread(db.engine_for, settings.effective_database_url)
    sessions = db.session_factory(engine)
    connectors = build(
        configs, settings.allowed_adapters, limits.gate_for(configs) if settings.global_limits else None
    )

    notifier = (
        SmsGateway(settings.notifier_url, settings.notifier_credential) if settings.notifier_url else None
    )
    court_bank = (
        CourtBankConnector(
            RegistryClient(
                "court-bank",
                settings.court_bank_url,
                settings.court_bank_credential,
                limits=ClientLimits(requests_per_second=settings.court_bank_requests_per_second),
            )
        )
        if settings.court_bank_url
        else None
    )
    token = None
    try:
        ids = await db.write(sessions, querying.ensure_registries, configs)
        ctx = Context.of(settings, sessions, connectors, ids, actor(requested_by))
        runtime = Runtime(settings, ctx, notifier, court_bank)
        token = _current.set(runtime)
        yield runtime
    finally:
        if token is not None:
            _current.reset(token)
        await asyncio.gather(*(c.aclose() for c in connectors.values()))
        if notifier is not None:
            await notifier.aclose()
        if court_bank is not None:
            await court_bank.aclose()


class _OnlyWarnings(logging.Filter):
    """Prefect's lines below WARNING (every task's "Finished in state Completed()", the flow's, the temporary
    server's) are for the UI, not for a person at a terminal, who sees one progress bar and the command's
    summary instead: the UI keeps them all (its log handler is another)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith("prefect")


_QUIET = _OnlyWarnings()

#: Where a flow run in this process reports its progress (`progress`): the terminal's bar, while `run` runs.
_progress: Callable[[int, int], None] | None = None


def progress(done: int, total: int) -> None:
    """A flow's progress (the sweep's debtors), for the progress bar of a terminal that runs it here."""
    if _progress is not None:
        _progress(done, total)


class _NoCancelledTraceback(logging.Filter):
    """A run cancelled on POSIX (from the UI, or by `clerk serve` stopping) ends by Prefect sending its
    process SIGTERM: the engine records Cancelled, then asyncio logs the TerminationSignal that ended the
    loop with its whole chained traceback. The state says what happened; the traceback says nothing more."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import TerminationSignal

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, TerminationSignal)


logging.getLogger("asyncio").addFilter(_NoCancelledTraceback())


def run(flow_call: Awaitable[Any], what: str = "running") -> State:
    """Run an async flow called with `return_state=True` to its end, from synchronous code (the CLI): the
    terminal shows one progress bar (`what`, then the flow's `progress`) and the warnings, not Prefect's line
    per task and per state (the UI keeps them all); the caller prints the summary."""
    global _progress
    from prefect.logging.handlers import PrefectConsoleHandler
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    handlers = [*logging.getLogger().handlers, *logging.getLogger("prefect").handlers]
    consoles = [h for h in handlers if isinstance(h, PrefectConsoleHandler)]

    async def main() -> State:
        return cast(State, await flow_call)

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(f"{what} (a temporary Prefect server starts first when none runs)", total=None)

    def show(done: int, total: int) -> None:
        bar.update(task, description=what, completed=done, total=total)

    for handler in consoles:  # kept: the temporary server says it stops as the process exits
        handler.addFilter(_QUIET)
    _progress = show
    try:
        with bar:
            return asyncio.run(main())
    finally:
        _progress = None


async def send_notices(rt: Runtime) -> int:
    """Deliver the notices written down so far (none when no SMS gateway is set)."""
    from clerk.casebook import notices

    return await notices.send_notifications(rt.sessions, rt.notifier) if rt.notifier else 0


def where() -> dict[str, object]:
    """Which process ran this run, for the run's summary: the worker that started it (set by the worker),
    the host, and the parent (the worker, or the fork server of `clerk serve`)."""
    return {
        "worker": os.environ.get("PREFECT__WORKER_NAME"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "parent_pid": os.getppid(),
    }
