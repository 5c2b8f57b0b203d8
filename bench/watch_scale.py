"""The deposit watch at a province's scale (issue 43): many watched accounts across three banks, deposits
arriving at a steady rate, the banks' rate limits set, push feeds and polling side by side.

Set-up: a seeded world of three banks, each with a push feed and a request quota (the simulator answers 429
beyond it; the clerk's limiter is set to the same rate), its cases imported into a fresh SQLite case book and
swept once. A watched account is an account of a case whose freezes do not yet cover what it owes (what
`watch.uncovered_accounts` returns). Then, for each mode, deposits land at `rate` a second for `seconds`
while the watch's use cases run as the watch flow runs them (`listen` per feed, or `poll_once` every
`poll_s`). What lands, drawn per deposit:

- `short`:     an organisation's account of a case still short, less than its shortfall: frozen in full;
- `covering`:  the same, more than the shortfall: frozen to the shortfall and no further;
- `person`:    a natural person's account of a case still short (the living allowance decides);
- `protected`: an account whose purpose the law protects: never frozen;
- `outsider`:  an account at the bank of nobody in our case book: never frozen.

Each `short` and `covering` deposit lands on a case of its own, on an account that no freeze of ours left
short (so the bank's own top-up cannot freeze it before the clerk does). Its latency is from the deposit's
POST to the moment the bank's ledger shows our freeze holding it (or the shortfall). After both modes the
banks' ledgers are checked: every case's freezes within what it owes, none on a protected account, every
person left the living allowance, nothing on an outsider's account.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bench.common import record, table
from bench.watch import close, sweep_once, watch_context
from clerk import control
from clerk.casebook import cases
from clerk.casebook.casefile import read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from clerk.context import Context
from clerk.control import watch
from clerk.settings import Settings
from clerk.store import db
from connectors.base import RegistryKind
from connectors.config import SIM_CREDENTIAL, RegistryConfig
from connectors.simulator.bank import BankSimulator
from connectors.simulator.base import Quota
from connectors.simulator.ledger import Holding, Ledger
from connectors.simulator.serve import build_world, world_in_background
from connectors.simulator.world import case_rows
from models.exemptions import Exemptions
from models.policy import Policy
from models.rules import AssetKind
from models.supervision import bureau_today
from models.tables import Asset, Case, CaseDebtor, Debtor, Registry

ACTOR = "bench:watch-scale"
BANKS = ("bank-a", "bank-b", "bank-c")
#: Of each deposit: what it lands on (see the module's docstring).
MIX = (("short", 0.55), ("covering", 0.10), ("person", 0.15), ("protected", 0.10), ("outsider", 0.10))
OUTSIDERS = 1_000  # accounts per bank of nobody in the case book
#: Watched accounts per debtor in the seeded world (0.55 hold deposits, at 1.6 banks on average, and most
#: cases are short of what they owe; 266,667 debtors gave 172,319): how many debtors to seed.
WATCHED_PER_DEBTOR = 0.64


@dataclass
class Landing:
    kind: str
    bank: str
    account: str
    amount: int
    expect: int  # what our freezes should come to hold more, at least (0: nothing)
    before: int = 0
    posted: float = 0.0
    frozen: float | None = None


def configs(requests_per_second: float) -> list[RegistryConfig]:
    return [
        RegistryConfig(
            code=code,
            name=code,
            kind=RegistryKind.BANK,
            adapter="bank-json",
            base_url="http://127.0.0.1:9",
            credential=SecretStr(SIM_CREDENTIAL),
            batch_size=500,
            requests_per_second=requests_per_second,
            push_feed=True,
        )
        for code in BANKS
    ]


def outsider(bank: str, n: int) -> str:
    """The account number of the `n`th account at `bank` of nobody in the case book."""
    return f"6299{BANKS.index(bank):03d}{n:012d}"


def ours(ledger: Ledger, account: str) -> int:
    """What our effective freezes hold on an account now."""
    return sum(m.held_fen or 0 for m in ledger.on_asset.get(account, ()) if m.status == "effective")


def _short_of_request(ledger: Ledger, account: str) -> bool:
    return any(
        m.status != "released" and (m.held_fen or 0) < (m.requested_fen or 0)
        for m in ledger.on_asset.get(account, ())
    )


def pools(
    sessions: sessionmaker[Session], banks: dict[str, BankSimulator], exempt: Exemptions, today: dt.date
) -> tuple[dict[str, list[Landing]], int]:
    """Accounts to land deposits on, by kind (one per case for `short` and `covering`), shuffled; and how
    many accounts the watch watches."""
    with sessions() as session:
        watched = sum(len(v) for v in watch.uncovered_accounts(session, today).values())
        codes = {rid: code for rid, code in session.execute(select(Registry.id, Registry.code))}
        live = control.claims_by_case(session)
        debtors_of: dict[int, list[int]] = {}
        cases_of: Counter[int] = Counter()
        for case_id, debtor_id in session.execute(select(CaseDebtor.case_id, CaseDebtor.debtor_id)):
            debtors_of.setdefault(case_id, []).append(debtor_id)
            cases_of[debtor_id] += 1
        kinds = {did: kind for did, kind in session.execute(select(Debtor.id, Debtor.kind))}
        accounts: dict[int, list[Asset]] = {}
        for asset in session.scalars(select(Asset).where(Asset.kind == "deposit")):
            accounts.setdefault(asset.debtor_id, []).append(asset)
        found: dict[str, list[Landing]] = {kind: [] for kind, _ in MIX}
        # A person's deposit frozen for a case that a `short` or `covering` deposit lands on too would leave
        # that one less room than it expects: people of those cases get no deposits.
        people: list[tuple[int, Landing]] = []
        taken_debtors: set[int] = set()
        active = select(Case).where(Case.status == "active").options(selectinload(Case.payments))
        for case in session.scalars(active):
            short = cases.owed(case, today).remaining - live.get(case.id, 0)
            if short < 2_000_00:
                continue
            taken = False
            for debtor_id in debtors_of.get(case.id, ()):
                for asset in accounts.get(debtor_id, ()):
                    bank = banks.get(codes[asset.registry_id])
                    holding = bank.ledger.holdings.get(asset.identifier) if bank else None
                    if bank is None or holding is None or holding.restrictions or asset.other_measures:
                        continue
                    if exempt.protects("deposit", holding.purpose):
                        found["protected"].append(Landing("protected", bank.code, holding.identifier, 0, 0))
                    elif kinds[debtor_id] != "organisation":
                        people.append((debtor_id, Landing("person", bank.code, holding.identifier, 0, 0)))
                    elif (
                        not taken
                        and cases_of[debtor_id] == 1
                        and not _short_of_request(bank.ledger, holding.identifier)
                    ):
                        taken = True
                        landing = Landing("short", bank.code, holding.identifier, short, short)
                        found["short"].append(landing)
            if taken:
                taken_debtors.update(debtors_of[case.id])
    found["person"] = [landing for debtor, landing in people if debtor not in taken_debtors]
    rng = random.Random(43)
    for landings in found.values():
        rng.shuffle(landings)
    # the cases still short are split between `short` and `covering` as the mix has them
    shorts = found["short"]
    cut = round(len(shorts) * 0.10 / (0.55 + 0.10))
    found["covering"], found["short"] = shorts[:cut], shorts[cut:]
    found["outsider"] = [
        Landing("outsider", code, outsider(code, n), 0, 0) for code in banks for n in range(OUTSIDERS)
    ]
    return found, watched


def plan(found: dict[str, list[Landing]], count: int, rng: random.Random) -> list[Landing]:
    """`count` deposits drawn by the mix; `short` and `covering` take their accounts (and cases) for good."""
    planned: list[Landing] = []
    kinds = [kind for kind, _ in MIX]
    weights = [share for _, share in MIX]
    for kind in rng.choices(kinds, weights, k=count):
        pool = found[kind]
        if kind in ("short", "covering"):
            if not pool:
                raise RuntimeError(f"no case left to land a {kind!r} deposit on: seed more accounts")
            landing = pool.pop()
            shortfall = landing.amount
            if kind == "short":  # less than the shortfall: all of it frozen
                amount = rng.randrange(1_00, max(shortfall // 2, 2_00))
                planned.append(Landing(kind, landing.bank, landing.account, amount, amount))
            else:  # more than the shortfall: the shortfall frozen, no more
                amount = shortfall + rng.randrange(100_00, 10_000_00)
                planned.append(Landing(kind, landing.bank, landing.account, amount, shortfall))
        else:
            landing = pool[rng.randrange(len(pool))]
            amount = rng.randrange(1_00, 5_000_00)
            planned.append(Landing(kind, landing.bank, landing.account, amount, 0))
    return planned


class LedgerChanges:
    """When each account's freezes at the banks last changed: the ledgers' `place` (our freeze) and `deposit`
    (a top-up of a freeze that held less than it asked) note the moment, in the simulator's thread, so a
    deposit's latency is the moment the ledger changed, and the check looks at changed accounts only (a
    check of every waiting deposit every 20 ms held the GIL from the clerk once thousands waited)."""

    def __init__(self, banks: dict[str, BankSimulator]) -> None:
        self.changed: dict[tuple[str, str], float] = {}
        for code, bank in banks.items():
            ledger = bank.ledger
            ledger.place = self._noting(code, ledger.place, 2)  # type: ignore[method-assign]
            ledger.deposit = self._noting(code, ledger.deposit, 0)  # type: ignore[method-assign]

    def _noting(self, code: str, method: Any, account_at: int) -> Any:
        def noted(*args: Any) -> Any:
            try:
                return method(*args)
            finally:
                self.changed[(code, args[account_at])] = time.perf_counter()

        return noted

    def take(self) -> dict[tuple[str, str], float]:
        taken, self.changed = self.changed, {}
        return taken


def thread_cpu_s(names: tuple[str, ...]) -> float:
    """CPU seconds spent so far by this process's threads whose names start with one of `names`
    (/proc/self/task/TID/stat: utime and stime)."""
    total = 0
    for thread in threading.enumerate():
        if thread.name.startswith(names) and thread.native_id is not None:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1]
                utime, stime = fields.split()[11:13]
                total += int(utime) + int(stime)
    return total / os.sysconf("SC_CLK_TCK")


class Watching(threading.Thread):
    """The clerk's watch in a thread and an event loop of its own, as its flow runs in a process of its own:
    the bench's deposits and its checks of the ledgers are not held up by the clerk's work, nor it by them.
    Push: a listener per bank's feed; poll: a poll every `poll_s`."""

    def __init__(self, mode: str, ctx: Context, seconds: float, poll_s: float) -> None:
        super().__init__(name="clerk-watch", daemon=True)
        self.mode, self.ctx, self.seconds, self.poll_s = mode, ctx, seconds, poll_s
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quit: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # reported by `end`
            self.error = exc
            self.ready.set()

    async def _watch(self) -> None:
        self._loop, self._quit = asyncio.get_running_loop(), asyncio.Event()
        stop, ctx = self._quit, self.ctx

        async def poller() -> None:
            while not stop.is_set():
                await watch.poll_once(ctx)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_s)

        watchers = (
            [asyncio.create_task(watch.listen(ctx, code, self.seconds, 5.0)) for code in ctx.registries]
            if self.mode == "push"
            else [asyncio.create_task(poller())]
        )
        self.ready.set()
        try:
            await stop.wait()
            for task in watchers:
                if task.done() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await close(self.ctx)

    def end(self) -> None:
        if self._loop is not None and self._quit is not None:
            self._loop.call_soon_threadsafe(self._quit.set)
        self.join()
        if self.error is not None:
            raise RuntimeError(f"the watch failed: {self.error!r}") from self.error


async def measure(
    mode: str,
    ctx: Context,
    configs: list[RegistryConfig],
    banks: dict[str, BankSimulator],
    changes: LedgerChanges,
    landings: list[Landing],
    rate: float,
    poll_s: float,
    settle_s: float,
) -> dict[str, Any]:
    """Run the watch (`Watching`) while `landings` land at `rate` a second; returns the phase's figures."""
    urls = {c.code: c.base_url for c in configs}
    requests = {code: bank.requests_seen for code, bank in banks.items()}
    refused = {code: bank.quota.refused if bank.quota else 0 for code, bank in banks.items()}
    mine = ("simulator-", threading.current_thread().name)
    cpu = time.process_time() - thread_cpu_s(mine)
    pending: dict[tuple[str, str], list[Landing]] = {}
    done = asyncio.Event()
    lag = 0.0

    async def checker() -> None:
        nonlocal lag
        while not done.is_set():
            now = time.perf_counter()
            for (code, account), at in changes.take().items():
                waiting = pending.get((code, account), [])
                held = ours(banks[code].ledger, account)
                for landing in [x for x in waiting if held >= x.before + x.expect]:
                    landing.frozen = max(at - landing.posted, 0.0)
                    waiting.remove(landing)
                if not waiting:
                    pending.pop((code, account), None)
            await asyncio.sleep(0.02)
            lag = max(lag, time.perf_counter() - now - 0.02)

    async def progress(begun: float) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 60)
            now = time.perf_counter()
            posted = sum(1 for x in landings if x.posted)
            frozen = [x.frozen for x in landings if x.frozen is not None]
            waiting = [x for group in pending.values() for x in group]
            oldest = max((now - x.posted for x in waiting), default=0.0)
            print(
                f"  {mode} {now - begun:5.0f} s: {posted:,} deposits landed, {len(frozen):,} frozen, "
                f"{len(waiting):,} waiting (oldest {oldest:.1f} s), p95 so far {_percentile(frozen, 95)} s",
                flush=True,
            )

    started = time.perf_counter()
    watching = Watching(mode, ctx, len(landings) / rate + settle_s + 10, poll_s)
    watching.start()
    watching.ready.wait()
    check = asyncio.create_task(checker())
    begun = time.perf_counter() + 1.0  # the watch is running
    shown = asyncio.create_task(progress(begun))
    try:
        # A connection per deposit: a kept-alive one can be closed by the server as it is reused, and a
        # deposit whose POST failed after it was sent may or may not have landed.
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for i, landing in enumerate(landings):
                await asyncio.sleep(max(0.0, begun + i / rate - time.perf_counter()))
                landing.before = ours(banks[landing.bank].ledger, landing.account)
                landing.posted = time.perf_counter()
                if landing.expect:
                    pending.setdefault((landing.bank, landing.account), []).append(landing)
                response = await client.post(
                    f"{urls[landing.bank]}/_sim/deposits",
                    json={"account_no": landing.account, "amount_fen": landing.amount},
                )
                response.raise_for_status()
        landed_s = time.perf_counter() - begun
        deadline = time.perf_counter() + settle_s
        while pending and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
    finally:
        done.set()
        await asyncio.gather(check, shown)
        watching.end()
    wall = time.perf_counter() - started
    clerk_cpu = time.process_time() - thread_cpu_s(mine) - cpu
    latencies = [x.frozen for x in landings if x.expect and x.frozen is not None]
    unfrozen = [x for x in landings if x.expect and x.frozen is None]
    for x in unfrozen[:10]:
        held = ours(banks[x.bank].ledger, x.account) - x.before
        print(f"  {mode}: a {x.kind} deposit of {x.amount} fen: {held} of {x.expect} fen frozen")
    missed = len(unfrozen)
    row: dict[str, Any] = {
        "mode": mode,
        "deposits": len(landings),
        "to freeze": sum(1 for x in landings if x.expect),
        "missed": missed,
        "p50 s": _percentile(latencies, 50),
        "p95 s": _percentile(latencies, 95),
        "p99 s": _percentile(latencies, 99),
        "over s": round(landed_s, 1),
        "clerk CPU %": round(100 * clerk_cpu / wall, 1),
        "bench lag s": round(lag, 2),
    }
    row["req/s at each bank"] = " / ".join(
        f"{(bank.requests_seen - requests[code]) / wall:.1f}" for code, bank in banks.items()
    )
    row["429s"] = sum((b.quota.refused if b.quota else 0) - refused[code] for code, b in banks.items())
    return row


def _percentile(values: list[float], p: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 3)


def check_ledgers(
    sessions: sessionmaker[Session],
    banks: dict[str, BankSimulator],
    exempt: Exemptions,
    today: dt.date,
) -> list[str]:
    """What the banks' ledgers hold, against the law: every case within what it owes, nothing on a protected
    or an outsider's account, every person left the living allowance. Returns the breaches found."""
    breaches: list[str] = []
    held_by_case: Counter[str] = Counter()
    ours_by_owner: Counter[str] = Counter()
    free_by_owner: Counter[str] = Counter()
    for bank in banks.values():
        ledger = bank.ledger
        for measure in ledger.measures.values():
            if measure.status == "effective" and measure.held_fen:
                held_by_case[measure.case_no] += measure.held_fen
                holding = ledger.holdings[measure.identifier]
                if exempt.protects("deposit", holding.purpose):
                    breaches.append(f"{bank.code}: a freeze on an account protected as {holding.purpose}")
                if holding.owner_id.startswith("outsider"):
                    breaches.append(f"{bank.code}: a freeze on an account of nobody in the case book")
        for holding in ledger.holdings.values():
            if holding.balance_fen is None or holding.purpose:
                continue
            others = sum(
                r.amount_fen or holding.balance_fen for r in holding.restrictions if r.until >= ledger.today
            )
            mine = ours(ledger, holding.identifier)
            ours_by_owner[holding.owner_id] += mine
            free_by_owner[holding.owner_id] += max(holding.balance_fen - others - mine, 0)
    with sessions() as session:
        for case in session.scalars(select(Case).options(selectinload(Case.payments))):
            owed = cases.owed(case, today).remaining
            if held_by_case[case.case_number] > owed:
                breaches.append(f"a case holds {held_by_case[case.case_number]} fen frozen, owes {owed}")
        people = session.execute(
            select(Debtor.id_number, Debtor.dependants, Case.court_code)
            .join(CaseDebtor, CaseDebtor.debtor_id == Debtor.id)
            .join(Case, Case.id == CaseDebtor.case_id)
            .where(Debtor.kind == "person")
        ).tuples()
        for id_number, dependants, court in people:
            kept = exempt.allowance(court, today, dependants)
            if ours_by_owner[id_number] and free_by_owner[id_number] < kept:
                breaches.append(f"a person keeps {free_by_owner[id_number]} fen, the allowance is {kept}")
    return breaches


def run(
    accounts: int = 200_000,
    rate: float = 20.0,
    seconds: float = 600.0,
    requests_per_second: float = 20.0,
    poll_s: float = 20.0,
    quick: bool = False,
) -> list[dict[str, Any]]:
    if quick:
        accounts, rate, seconds, poll_s = 3_000, 8.0, 10.0, 2.0
    debtors = round(accounts / WATCHED_PER_DEBTOR)
    now = dt.datetime.now(dt.UTC)
    today = bureau_today(now)
    started = time.perf_counter()
    world = build_world(configs(requests_per_second), debtors, seed=43, now=now)
    banks = {s.code: s for s, _, _ in world.simulators if isinstance(s, BankSimulator)}
    for bank in banks.values():
        for n in range(OUTSIDERS):
            bank.ledger.add(Holding(outsider(bank.code, n), f"outsider-{n}", AssetKind.DEPOSIT, 0))
    exempt = Settings().exemptions()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, world_in_background(world) as served:
        engine = db.make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        case_file = Path(tmp) / "cases.csv"
        write_case_file(case_file, case_rows(world.debtors, 43, today))
        case_rows_read, _ = read_case_file(case_file, max_bytes=10**10, today=today)
        with sessions.begin() as session:
            import_cases(session, case_rows_read, actor=ACTOR)
        policy = Policy(exempt=exempt)
        # The first sweep, unlimited: at a bank's limit its freezes alone would take most of an hour. The
        # limits hold from the watch on.
        unlimited = [c.model_copy(update={"requests_per_second": 0}) for c in served]
        asyncio.run(sweep_once(sessions, unlimited, now, policy))
        for bank in banks.values():
            bank.quota = Quota(requests_per_second, requests_per_second)
        found, watched = pools(sessions, banks, exempt, today)
        ready_s = time.perf_counter() - started
        print(
            f"{debtors:,} debtors seeded, imported and swept in {ready_s:.0f} s; {watched:,} watched; "
            + ", ".join(f"{len(v):,} {k}" for k, v in found.items())
        )
        rng = random.Random(4343)
        changes = LedgerChanges(banks)
        for mode in ("push", "poll"):
            landings = plan(found, round(rate * seconds), rng)
            ctx = watch_context(sessions, served, policy, ACTOR)
            settle = 30.0 if mode == "push" else 600.0  # polling: the goal, p95 under 10 minutes
            row = asyncio.run(measure(mode, ctx, served, banks, changes, landings, rate, poll_s, settle))
            rows.append(
                row
                | {"poll every s": poll_s if mode == "poll" else "-", "bank limit req/s": requests_per_second}
            )
        breaches = check_ledgers(sessions, banks, exempt, today)
        engine.dispose()
    for row in rows:
        row["breaches"] = len(breaches)
    table(f"Deposit watch at scale ({watched:,} watched accounts, {rate:g} deposits/s)", rows)
    for breach in breaches[:20]:
        print(f"  breach: {breach}")
    record("watch-scale", [r | {"watched": watched, "deposits/s": rate} for r in rows], quick=quick)
    if breaches:
        raise RuntimeError(f"{len(breaches)} breach(es) of the law at the banks' ledgers (listed above)")
    return rows
