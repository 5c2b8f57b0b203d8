"""Case money: the court's bank statement read into the journal, beside the reference statement reader
(`bench/money_reference.py`, the minimal correct implementation of the same work), and the daily
reconciliation of every sub-account.

A case file of N cases is imported into a fresh case book (the clerk's, SQLite) and into the reference's;
each opens a sub-account per case at a court's bank of its own (two `clerk sim` processes serving the
simulated court bank alone), and both banks then receive the same N credits in the same order, so that each
statement lists the same lines under the same references: 80 % a transfer to a case's sub-account (1 to
2,000 yuan: most cases owe more, some less), 5 % the same listed twice under one reference, 10 % to the
master account with no sub-account named and 5 % to a sub-account never issued (both unidentified), then
0.5 % of them reversed by the bank. Each reads its statement to the end in a process of its own (the
clerk's use case, `clerk.money.arriving.take_statement`, without Prefect), one after the other; what each
placed is compared (the same lines, transfers, unidentified credits, reversals and repeats, and both
journals sum to 0), and the clerk then reconciles every sub-account and the master account
(`clerk.money.reconcile`). Goals: the clerk at ≥ 0.8 of the reference's lines per second at 100,000
lines; the reconciliation of 100,000 sub-accounts under 30 s.

`python -m bench money` (100,000 cases and lines; `--quick`: 500). `python -m bench.money clerk
open|take|reconcile` is one side's step, with the settings in the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.common import record, run_module, serving, table
from clerk.casebook.casefile import write_case_file
from clerk.context import Context
from clerk.money import arriving, reconcile, subaccounts
from clerk.settings import get_settings
from clerk.store import db
from connectors.court_bank import CourtBankConnector
from connectors.http import ClientLimits, RegistryClient
from connectors.simulator.serve import free_loopback_ports
from connectors.simulator.synthetic import sample_case_rows
from models.supervision import bureau_today
from models.tables import MoneyLeg
from models.values import CaseNumber

SEED = 7
UNISSUED = "95588000000099999999"  # a sub-account number the bank never issued


# --- one side's step, in a process of its own --------------------------------------------------------


async def _clerk(command: str) -> dict[str, Any]:
    conf = get_settings()
    assert conf.court_bank_url, "CLERK_COURT_BANK_URL"
    sessions = db.session_factory(db.engine_for(conf.effective_database_url))
    ctx = Context.of(conf, sessions, {}, {}, "bench:money")
    bank = CourtBankConnector(
        RegistryClient(
            "court-bank",
            conf.court_bank_url,
            conf.court_bank_credential,
            limits=ClientLimits(requests_per_second=conf.court_bank_requests_per_second),
        )
    )
    started, cpu = time.perf_counter(), time.process_time()
    try:
        if command == "open":
            opened = await subaccounts.open_missing(ctx, bank, limit=10_000_000)
            found: dict[str, Any] = {"opened": opened.opened, "failed": opened.failed}
        elif command == "take":
            done = await arriving.take_statement(ctx, bank, conf.court_account, pages=1_000_000)
            total = await db.read(
                sessions, lambda s: s.scalar(select(func.coalesce(func.sum(MoneyLeg.fen), 0)))
            )
            found = {"lines": done.lines, "placed": dict(done.placed), "journal_sum": int(total or 0)}
        elif command == "reconcile":
            result = await reconcile.reconcile(ctx, bank)
            found = {
                "accounts": result.accounts,
                "agreed": result.agreed,
                "differences": len(result.differences),
            }
        else:
            raise SystemExit(f"unknown step {command!r}: open, take or reconcile")
    finally:
        await bank.aclose()
    return found | {
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --- the benchmark ------------------------------------------------------------------------------------


@contextmanager
def _banks(env: dict[str, str]) -> Iterator[list[str]]:
    """Two simulated court banks (nothing else served), each in a `clerk sim` of its own."""
    urls = [f"http://127.0.0.1:{port}" for port in free_loopback_ports(2)]
    with ExitStack() as stack:
        for url in urls:
            only_the_bank = env | {
                "CLERK_REGISTRIES": "[]",
                "CLERK_NOTIFIER_URL": "",
                "CLERK_COURT_BANK_URL": url,
            }
            stack.enter_context(serving(["cli", "sim", "--debtors", "1"], only_the_bank, ready="serving"))
        yield urls


def credits(case_numbers: list[str], count: int) -> list[dict[str, Any]]:
    """The statement's credits, the same for both banks (see the module's docstring)."""
    rng = random.Random(SEED)
    made: list[dict[str, Any]] = []
    for _ in range(count):
        draw = rng.random()
        amount = rng.randrange(1, 2_001) * 100
        if draw < 0.85:
            made.append(
                {
                    "amount_fen": amount,
                    "case_no": rng.choice(case_numbers),
                    "twice": draw >= 0.80,
                    "payer_account": f"6222{rng.randrange(10**12):012d}",
                    "remittance": "还款",
                }
            )
        elif draw < 0.95:
            made.append({"amount_fen": amount, "to": None, "remittance": "案款"})
        else:
            made.append({"amount_fen": amount, "to": UNISSUED, "remittance": "案款"})
    return made


def _feed(url: str, made: list[dict[str, Any]], reversed_share: float) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        references: list[str] = []
        for i in range(0, len(made), 5_000):
            reply = client.post("/_sim/credits", json={"credits": made[i : i + 5_000]})
            reply.raise_for_status()
            references += reply.json()["references"]
        for reference in random.Random(SEED + 1).sample(references, int(len(references) * reversed_share)):
            client.post("/_sim/reverse", json={"reference": reference}).raise_for_status()


def measure(size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-money-") as tmp:
        folder = Path(tmp)
        case_file = folder / "cases.csv"
        rows = sample_case_rows(SEED, size, bureau_today())
        write_case_file(case_file, rows)
        numbers = sorted({str(CaseNumber.parse(row["case_number"])) for row in rows})  # as both store them
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CLERK_", "PREFECT_"))}
        with _banks(base) as (ours, theirs):
            env = base | {
                "CLERK_DATABASE_URL": f"sqlite:///{folder}/clerk.db",
                "CLERK_COURT_BANK_URL": ours,
                "CLERK_REGISTRIES": "[]",
                "CLERK_NOTIFIER_URL": "",
                "CLERK_COURT_BANK_REQUESTS_PER_SECOND": "2000",  # the simulator: no politeness needed
            }
            ref_url = f"sqlite:///{folder}/reference.db"
            ref_env = env | {"CLERK_COURT_BANK_URL": theirs}
            run_module(["cli", "cases", "import", str(case_file)], env)
            run_module(["bench.money_reference", "load", ref_url, str(case_file)], ref_env)
            opened = _step(["bench.money", "clerk", "open"], env)
            _step(["bench.money_reference", "open", ref_url], ref_env)
            made = credits(numbers, size)
            for url in (ours, theirs):
                _feed(url, made, 0.005)
            clerk = _step(["bench.money", "clerk", "take"], env)
            reference = _step(["bench.money_reference", "take", ref_url], ref_env)
            _same(clerk, reference)
            reconciled = _step(["bench.money", "clerk", "reconcile"], env)
    if not reconciled["agreed"]:
        raise RuntimeError(f"the clerk's journal and its bank disagree: {reconciled}")
    return {
        "cases": len(numbers),
        "lines": clerk["lines"],
        "open s": round(opened["seconds"], 1),
        "clerk s": round(clerk["seconds"], 1),
        "clerk lines/s": round(clerk["lines"] / clerk["seconds"]),
        "reference s": round(reference["seconds"], 1),
        "reference lines/s": round(reference["lines"] / reference["seconds"]),
        "ratio": round(reference["seconds"] / clerk["seconds"], 2),
        "CPU ratio": round(reference["cpu_s"] / clerk["cpu_s"], 2),  # less moved by a busy host's steal
        "clerk peak MB": round(clerk["peak_mb"], 1),
        "reconcile s": round(reconciled["seconds"], 2),
        "accounts": reconciled["accounts"],
        "placed": " ".join(f"{k} {v}" for k, v in sorted(clerk["placed"].items())),
    }


def _step(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    _, output = run_module(args, env, timeout=3_600)
    found: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return found


def _same(clerk: dict[str, Any], reference: dict[str, Any]) -> None:
    """Both read the same statement the same way, or the figures compare nothing."""
    if clerk["placed"] != reference["placed"] or clerk["lines"] != reference["lines"]:
        raise RuntimeError(f"the clerk placed {clerk['placed']}, the reference {reference['placed']}")
    for side, figures in (("clerk", clerk), ("reference", reference)):
        if figures["journal_sum"] != 0:
            raise RuntimeError(f"the {side}'s journal sums to {figures['journal_sum']}, not 0")


def run(quick: bool = False, sizes: list[int] | None = None) -> None:
    rows = [measure(size) for size in sizes or [500 if quick else 100_000]]
    table(
        "case money: the court's bank statement read, placed and journaled, beside the reference "
        "(goal: ratio ≥ 0.8), and every sub-account reconciled (goal: under 30 s at 100,000)",
        rows,
    )
    record("money", rows, quick=quick)


def main() -> int:
    if sys.argv[1:2] == ["clerk"] and len(sys.argv) == 3:
        print(json.dumps(asyncio.run(_clerk(sys.argv[2]))))
        return 0
    raise SystemExit("python -m bench.money clerk open|take|reconcile (`python -m bench money` runs it all)")


if __name__ == "__main__":
    sys.exit(main())
