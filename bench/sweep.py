"""Sweep throughput and scale: debtor-registry lookups per second of a full sweep (five simulated registries,
batch queries, database writes, auto-control) beside the limit of the same simulators measured in the same
run by a plain asyncio + httpx client that sends the same batch requests and does nothing else.

Each size gets a fresh world: `clerk sim` serves five registries (three banks, real estate, vehicles) in a
process of its own, as in the demo; its case file is imported into a fresh case book; then, side by side,
the plain client asks every registry about every debtor, the sweep runs in a process of its own
(`bench/sweeper.py`), and the plain client asks again. The limit is the mean of the two plain runs. The
first sweep of a new case book finds every holding and places measures on most of them; a re-sweep (the
same debtors due again 31 days later, nothing changed) is the nightly steady state, and runs after the
second plain run. Peak memory is each process's own high-water mark (VmHWM; see `common.status_mb`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import reference
from bench.common import record, run_module, run_modules, serving, status_mb, table
from clerk.settings import get_settings
from connectors.adapter import HttpConnector
from connectors.base import QueryRequest, Subject
from connectors.config import RegistryConfig, registries_json, simulated_registries
from connectors.loader import build
from connectors.simulator.serve import free_loopback_ports
from models.supervision import bureau_today
from models.values import DebtorKind


def configs() -> list[RegistryConfig]:
    """The embedded default's five registries on free ports, without a request rate (the simulators set
    none); batch size and connections as the settings' defaults."""
    ports = free_loopback_ports(5)
    return [
        c.model_copy(update={"base_url": f"http://127.0.0.1:{port}", "requests_per_second": 0})
        for c, port in zip(simulated_registries(), ports, strict=True)
    ]


@dataclass
class Served:
    case_file: Path
    process: subprocess.Popen[str]

    def peak_mb(self) -> float:
        return status_mb("VmHWM", self.process.pid)


@contextmanager
def simulators(
    debtors: int, folder: Path, regs: list[RegistryConfig], notifier_url: str = ""
) -> Iterator[Served]:
    """`clerk sim` with a world of `debtors`, serving `regs` (and the SMS gateway at `notifier_url`, when
    given), writing its case file into `folder`."""
    case_file = folder / "cases.csv"
    env = os.environ | {
        "CLERK_REGISTRIES": registries_json(regs),
        "CLERK_NOTIFIER_URL": notifier_url,
        "CLERK_COURT_BANK_URL": "",
    }
    args = ["sim", "--debtors", str(debtors), "--seed", "1", "--write-cases", str(case_file)]
    with serving(["cli", *args], env, "serving") as process:
        yield Served(case_file, process)


def read_subjects(case_file: Path) -> list[Subject]:
    """Every debtor of the case file once, as a registry is asked about it."""
    seen: dict[str, Subject] = {}
    with case_file.open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            if row["debtor_id"] not in seen:
                seen[row["debtor_id"]] = Subject(
                    ref=str(len(seen) + 1),
                    kind=DebtorKind(row["debtor_kind"]),
                    id_number=row["debtor_id"],
                    name=row["debtor_name"],
                )
    return list(seen.values())


# --- the limit: a plain client ------------------------------------------------------------------------


class _Captured(Exception):
    def __init__(self, method: str, path: str, kwargs: dict[str, Any]) -> None:
        self.method, self.path, self.kwargs = method, path, kwargs


class _Capture:
    """Stands in for a RegistryClient: an adapter's query is captured as it would be sent, not sent."""

    def __init__(self, code: str) -> None:
        self.code = code

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raise _Captured(method, path, kwargs)


async def _wire(adapter: HttpConnector, request: QueryRequest) -> _Captured:
    try:
        await adapter.query(request)
    except _Captured as captured:
        return captured
    raise AssertionError("the adapter did not call its client")


async def plain_limit(regs: list[RegistryConfig], subjects: list[Subject]) -> tuple[float, int]:
    """Every registry asked about every subject in batches of its size, `max_connections` requests in
    flight per registry, all registries at once; the replies are read and dropped. (seconds, lookups)."""
    real = build(regs, get_settings().allowed_adapters)
    adapters = {code: type(c)(_Capture(code)) for code, c in real.items()}  # type: ignore[arg-type]
    await asyncio.gather(*(c.aclose() for c in real.values()))
    lookups = 0

    async def registry(config: RegistryConfig) -> None:
        nonlocal lookups
        batches = iter(range(0, len(subjects), config.batch_size))
        secret = config.credential.get_secret_value()
        async with httpx.AsyncClient(
            base_url=config.base_url,
            limits=httpx.Limits(max_connections=config.max_connections),
            timeout=config.timeout_s,
        ) as client:

            async def worker() -> None:
                nonlocal lookups
                for start in batches:
                    batch = tuple(subjects[start : start + config.batch_size])
                    ref = f"plain-{config.code}-{start}"
                    wire = await _wire(adapters[config.code], QueryRequest(request_ref=ref, subjects=batch))
                    headers = {"Authorization": f"Bearer {secret}", "X-Request-Ref": ref}
                    headers |= wire.kwargs.get("headers") or {}
                    for attempt in range(3):  # a connection the simulator closed under load: sent again
                        try:
                            response = await client.request(
                                wire.method,
                                wire.path,
                                json=wire.kwargs.get("json_body"),
                                content=wire.kwargs.get("content"),
                                headers=headers,
                            )
                            break
                        except httpx.TransportError:
                            if attempt == 2:
                                raise
                    response.raise_for_status()
                    lookups += len(batch)

            await asyncio.gather(*(worker() for _ in range(config.max_connections)))

    started = time.perf_counter()
    await asyncio.gather(*(registry(c) for c in regs))
    return time.perf_counter() - started, lookups


# --- the sweep ----------------------------------------------------------------------------------------


def clerk_env(database_url: str, regs: list[RegistryConfig]) -> dict[str, str]:
    return os.environ | {
        "CLERK_DATABASE_URL": database_url,
        "CLERK_REGISTRIES": registries_json(regs),
        "CLERK_NOTIFIER_URL": "",
        "CLERK_COURT_BANK_URL": "",
        "CLERK_LOG_LEVEL": "WARNING",
        "PREFECT_LOGGING_LEVEL": "WARNING",  # the flow's line per task stays out of the bench's output
    }


def import_cases(env: dict[str, str], case_file: Path) -> float:
    seconds, _ = run_module(["cli", "cases", "import", str(case_file)], env)
    return seconds


class LockWaits:
    """Samples, every `INTERVAL_S` while a sweep runs on PostgreSQL, which of the database's other
    sessions wait on a lock (pg_stat_activity's wait_event_type 'Lock'), and on which kind (pg_locks: an
    advisory lock, a row's transaction, a tuple, a relation): the share of the sweepers' time spent
    waiting, as the bench prints it."""

    INTERVAL_S = 0.05

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url)
        self.samples = 0
        self.waiting: dict[str, int] = {}
        self.statements: dict[str, int] = {}  # the waiting statements' first words, for what to mend next
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from sqlalchemy import text

        query = text(
            "SELECT coalesce(l.locktype, a.wait_event), left(regexp_replace(a.query, '\\s+', ' ', 'g'), 90) "
            "FROM pg_stat_activity a "
            "LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted "
            "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
            "AND a.wait_event_type = 'Lock'"
        )
        with self.engine.connect() as conn:
            while not self._stop.wait(self.INTERVAL_S):
                rows = conn.execute(query).all()
                conn.rollback()
                self.samples += 1
                for kind, statement in rows:
                    self.waiting[kind] = self.waiting.get(kind, 0) + 1
                    self.statements[statement] = self.statements.get(statement, 0) + 1

    def __enter__(self) -> LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()
        for statement, n in sorted(self.statements.items(), key=lambda item: -item[1])[:3]:
            print(f"lock waits: {n} sample(s) in: {statement}", file=sys.stderr)

    def share(self, sessions: int, kind: str | None = None) -> float:
        """Percent of the sweepers' sampled time spent waiting on a lock (of `kind`, or any)."""
        waits = self.waiting.get(kind, 0) if kind else sum(self.waiting.values())
        return round(100 * waits / max(self.samples * sessions, 1), 2)


def sweep_once(
    env: dict[str, str], days_later: int = 0, shards: int = 1, flow: bool = False
) -> dict[str, Any]:
    """One sweep, by `shards` sweepers side by side, one shard each (as a province's sweep runs on a pool):
    its time is from the first sweeper's start of sweeping to the last one's end (their interpreters'
    start left out, as for one sweeper); the counts and CPU are summed, the peak memory is the largest
    process's. On PostgreSQL, the share of the sweepers' time spent waiting on locks (LockWaits)."""
    how = ["--flow"] if flow else []
    sweepers = [["bench.sweeper", str(days_later), *how]]
    if shards > 1:
        sweepers = [
            ["bench.sweeper", str(days_later), "--shard", f"{k}/{shards}", *how] for k in range(1, shards + 1)
        ]
    url = env["CLERK_DATABASE_URL"]
    waits = LockWaits(url) if url.startswith("postgresql") else None
    with waits or contextlib.nullcontext():
        _, outputs = run_modules(sweepers, env, show_stderr=True)
    parts = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    summed = {
        key: sum(p[key] for p in parts)
        for key in ("lookups", "failed", "hits", "effective", "cpu_s", "read_calls")
    }
    return summed | {
        "seconds": max(p["ended"] for p in parts) - min(p["began"] for p in parts),
        "before_s": max(p["before_s"] for p in parts),
        "after_s": max(p["after_s"] for p in parts),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
        "lock_wait_pct": waits.share(shards) if waits else None,
        "advisory_wait_pct": waits.share(shards, "advisory") if waits else None,
        "waits_by_kind": (
            " ".join(f"{kind}:{waits.share(shards, kind)}" for kind in sorted(waits.waiting))
            if waits
            else None
        ),
    }


@contextmanager
def _prefect(folder: Path, wanted: bool) -> Iterator[None]:
    """With `wanted`, a Prefect server for the block (PREFECT_HOME in `folder`; PREFECT_API_URL set for the
    processes started in it), as `clerk serve` starts one."""
    if not wanted:
        yield
        return
    from deployments.embedded import prefect_server

    home = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(folder / "prefect")
    try:
        with prefect_server(free_loopback_ports(1)[0], lambda line: print(line, file=sys.stderr)):
            yield
    finally:
        if home is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = home


def reference_once(url: str, regs: list[RegistryConfig], days_later: int = 0) -> dict[str, Any]:
    """The reference sweep (bench/reference.py) in a process of its own, against `regs`."""
    env = clerk_env(url, regs)
    _, out = run_module(["bench.reference", "sweep", url, str(days_later)], env, show_stderr=True)
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def measure(
    debtors: int,
    database_url: str | None = None,
    resweep: bool = True,
    shards: int = 1,
    reference_url: str | None = None,
    flow: bool = False,
    with_reference: bool = True,
    clerk_first: bool = False,
) -> dict[str, Any]:
    """One size, side by side: plain client, reference sweep, the clerk's sweep, then (with `resweep`)
    plain client, the clerk's re-sweep and the reference's; each sweep of the clerk by `shards` processes
    side by side. The reference sweeps a world of its own (the same seed, its own simulators and case
    book), so that each finds every holding unfrozen; afterwards both worlds' ledgers are checked (no case
    over the cap, no key placed twice) and the reference's case book (its audit chain, each hit once).
    With `flow`, the clerk's sweep is the sweep flow, run against a Prefect server started for it as `clerk
    serve` starts one (a first sweep only). Without `with_reference`, the clerk's sweep alone (its world's
    ledgers still checked), for sizes where the reference's world and sweep would not fit the time. With
    `clerk_first`, each of the clerk's sweeps runs before the reference's instead of after (`scale`'s rounds
    alternate the order, so that the host's drift over a run does not always favour the same one)."""
    regs, twin_regs = configs(), configs()
    resweep = resweep and not flow
    none: dict[str, Any] = dict.fromkeys(("seconds", "lookups", "effective", "cpu_s", "peak_rss_mb"))
    ref, book = none, {}
    theirs: dict[str, Any] = {"placed": None, "cases over the cap": 0, "keys placed twice": 0}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp, _prefect(Path(tmp), flow):
        url = database_url or f"sqlite:///{tmp}/clerk.db"
        ref_url = reference_url or f"sqlite:///{tmp}/reference.db"
        (Path(tmp) / "twin").mkdir()
        with contextlib.ExitStack() as worlds:
            served = worlds.enter_context(simulators(debtors, Path(tmp), regs))
            twin = (
                worlds.enter_context(simulators(debtors, Path(tmp) / "twin", twin_regs))
                if with_reference
                else None
            )
            subjects = read_subjects(served.case_file)
            env = clerk_env(url, regs)
            intake_s = import_cases(env, served.case_file)
            if twin is not None:
                run_module(
                    ["bench.reference", "load", ref_url, str(twin.case_file)], clerk_env(ref_url, twin_regs)
                )

            def reference_sweep(days_later: int) -> dict[str, Any] | None:
                return reference_once(ref_url, twin_regs, days_later) if twin is not None else None

            def side_by_side(days_later: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
                """The clerk's sweep and the reference's (None without a twin), in this round's order."""
                before = None if clerk_first else reference_sweep(days_later)
                ours = sweep_once(env, days_later=days_later, shards=shards, flow=flow)
                return ours, reference_sweep(days_later) if clerk_first else before

            plain = [asyncio.run(plain_limit(regs, subjects))]
            sweep, first_ref = side_by_side(0)
            ref = first_ref or ref
            again: dict[str, Any] | None = None
            ref_again: dict[str, Any] | None = None
            if resweep:
                plain.append(asyncio.run(plain_limit(regs, subjects)))
                again, ref_again = side_by_side(31)
            # The cap as the last sweep applied it: on the re-sweep's day (31 days on), what a case owes has
            # grown by a month's delayed interest, and a case whose balance changed is planned again on it.
            today = bureau_today(dt.datetime.now(dt.UTC) + dt.timedelta(days=31 if again else 0))
            ours = reference.check_ledgers(regs, served.case_file, today)
            if twin is not None:
                theirs = reference.check_ledgers(twin_regs, twin.case_file, today)
                book = reference.check_book(ref_url)
            sim_mb = max(served.peak_mb(), twin.peak_mb() if twin else 0.0)
    limit = sum(n / s for s, n in plain) / len(plain)
    rate = sweep["lookups"] / sweep["seconds"]
    ref_rate = ref["lookups"] / ref["seconds"] if ref["seconds"] else None
    row = {
        "debtors": len(subjects),
        "database": url.split(":", 1)[0].split("+", 1)[0],
        "sweep": "flow" if flow else "plain",
        "sweepers": shards,
        "first": "clerk" if clerk_first or twin is None else "reference",
        "lookups": sweep["lookups"],
        "failed": sweep["failed"],
        "sweep s": round(sweep["seconds"], 2),
        "of which before": round(sweep["before_s"], 2),
        "after": round(sweep["after_s"], 2),
        "lookups/s": round(rate, 1),
        "reference s": _rounded(ref["seconds"], 2),
        "reference lookups/s": _rounded(ref_rate, 1),
        "reference ratio": _rounded(rate / ref_rate if ref_rate else None, 2),
        "limit/s": round(limit, 1),
        "ratio": round(rate / limit, 3),
        "measures placed": sweep["effective"],
        "reference placed": ref["effective"],
        "ledger measures": ours["placed"],
        "reference ledger measures": theirs["placed"],
        "cases over the cap": ours["cases over the cap"],
        "keys placed twice": ours["keys placed twice"],
        "reference cases over the cap": theirs["cases over the cap"],
        "reference keys placed twice": theirs["keys placed twice"],
        "reference chain breaks": book.get("chain breaks"),
        "reference assets twice": book.get("assets twice"),
        "reference audit events": book.get("audit events"),
        "re-sweep s": None,
        "re-sweep lookups/s": None,
        "re-sweep reference ratio": None,
        "re-sweep ratio": None,
        "sweep cpu s": round(sweep["cpu_s"], 1),
        "reference cpu s": _rounded(ref["cpu_s"], 1),
        "lock wait %": sweep["lock_wait_pct"],
        "advisory wait %": sweep["advisory_wait_pct"],
        "waits % by lock": sweep["waits_by_kind"],
        "reads per lookup": round(sweep["read_calls"] / max(sweep["lookups"], 1), 2),
        "sweep MB": round(sweep["peak_rss_mb"], 1),
        "reference MB": _rounded(ref["peak_rss_mb"], 1),
        "re-sweep MB": None,
        "simulators MB": round(sim_mb, 1),
        "import s": round(intake_s, 1),
    }
    if again is not None:  # None (printed "-"): not run
        row["re-sweep s"] = round(again["seconds"], 2)
        row["re-sweep lookups/s"] = round(again["lookups"] / again["seconds"], 1)
        row["re-sweep ratio"] = round(again["lookups"] / again["seconds"] / limit, 3)
        row["re-sweep MB"] = round(again["peak_rss_mb"], 1)
    if again is not None and ref_again is not None:
        row["re-sweep reference ratio"] = round(
            again["lookups"] / again["seconds"] / (ref_again["lookups"] / ref_again["seconds"]), 2
        )
    return row


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def run(quick: bool = False) -> None:
    """Throughput: one sweep beside the plain-client limit, on SQLite."""
    rows = [measure(1_000 if quick else 10_000)]
    table(
        "sweep throughput beside the plain-client limit (5 registries, batches of 200, 20 connections "
        "each; goal: ratio ≥ 0.8)",
        rows,
    )
    record("sweep", rows, quick=quick)


def scale(
    quick: bool = False,
    sizes: list[int] | None = None,
    databases: tuple[str, ...] = ("sqlite", "postgresql"),
    resweep: bool = True,
    shards: int = 1,
    flow: bool = False,
    with_reference: bool = True,
    rounds: int = 1,
) -> None:
    """Scale: the same at growing sizes, on SQLite and on PostgreSQL (a throwaway server); each sweep by
    `shards` processes side by side; with `flow`, the sweep flow's; without `with_reference`, no reference
    sweep (`measure`). With `rounds` above 1, each size and database is measured that many times in fresh
    worlds, the reference first in odd rounds and the clerk first in even ones, and the median of the rounds'
    ratios is printed beside each round's: on these shared hosts one run's ratio at 20,000 moves by ±0.15
    with nothing changed (bench/README.md, stop 32)."""
    from deployments.pgserver import postgres_server

    sizes = sizes or ([500, 1_000] if quick else [10_000, 100_000, 1_000_000])
    rows = []
    medians = []
    for n in sizes:
        for database in [d for d in ("sqlite", "postgresql") if d in databases]:
            runs = []
            for r in range(rounds):
                how: dict[str, Any] = {
                    "resweep": resweep,
                    "shards": shards,
                    "flow": flow,
                    "with_reference": with_reference,
                    "clerk_first": r % 2 == 1,
                }
                if database == "sqlite":
                    runs.append(measure(n, **how))
                    continue
                with postgres_server(durable=True) as pg:  # every commit flushed, as in production
                    url, ref_url = pg.create_database(f"bench_{n}"), pg.create_database(f"reference_{n}")
                    runs.append(measure(n, url, reference_url=ref_url, **how))
            for r, row in enumerate(runs, 1):
                row["round"] = f"{r} of {rounds}"
            rows += runs
            if rounds > 1 and with_reference:
                medians.append(median_row(runs))
    for row in rows:
        row["µs per lookup"] = round(1e6 * row["sweep s"] / max(row["lookups"], 1), 1)
    table(
        "sweep at scale (goal: time linear in debtors, peak memory flat and under 1 GiB, 1,000,000 debtors "
        "× 5 registries in under 30 minutes)",
        rows,
    )
    record("scale", rows, quick=quick)
    if medians:
        table("reference ratio: the median of alternating rounds (goal: plain ≥ 0.8, flow ≥ 0.7)", medians)
        record("scale-median", medians, quick=quick)


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One size and database's rounds in a line: the median of their reference ratios (first sweep and
    re-sweep), and each round's, in the order they ran."""

    def median_of(key: str) -> float | None:
        values = [row[key] for row in runs if row[key] is not None]
        return round(statistics.median(values), 2) if values else None

    first = runs[0]
    return {
        "debtors": first["debtors"],
        "database": first["database"],
        "sweep": first["sweep"],
        "sweepers": first["sweepers"],
        "rounds": len(runs),
        "reference ratio": median_of("reference ratio"),
        "each round": " ".join(_fmt_ratio(row["reference ratio"]) for row in runs),
        "re-sweep reference ratio": median_of("re-sweep reference ratio"),
        "each re-sweep": " ".join(_fmt_ratio(row["re-sweep reference ratio"]) for row in runs),
        "checks": sum(
            row[key] or 0
            for row in runs
            for key in (
                "cases over the cap",
                "keys placed twice",
                "reference cases over the cap",
                "reference keys placed twice",
                "reference chain breaks",
                "reference assets twice",
            )
        ),
    }


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
