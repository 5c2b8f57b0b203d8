"""Every benchmark at its small size (`python -m bench --quick NAME`), so that none rots: each runs in a
process of its own, as `make bench` runs it, must end well and must record its figures.

They run inside pytest (not before it) so that pytest-xdist's two workers share them with the other tests:
most of their time is spent waiting on servers and subprocesses. Their figures are smoke, not measurements
(the machine is busy with the other tests); `python -m bench` on a quiet machine measures.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import watch_scale
from clerk.store import db
from connectors.simulator.bank import BankSimulator
from connectors.simulator.ledger import Holding
from models.exemptions import Exemptions
from models.rules import AssetKind

ROOT = Path(__file__).resolve().parents[2]
#: Every benchmark, the longest first (pytest runs the tests that take minutes first, in this order).
BENCHMARKS = [
    "latency",
    "workers",
    "prefect",
    "scale",
    "busy",
    "watch",
    "sweep",
    "money",
    "decision",
    "simulators",
    "transport",
    "audit",
    "index",
    "convoy",
]


def bench(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """`python -m bench ARGS` as `make bench` runs it, to a good end: what it printed, and the rows it
    recorded (in a results file of its own)."""
    results = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=os.environ | {"BENCH_RESULTS": str(results)},
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done, [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]


def test_the_list_is_every_benchmark() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    choices = re.search(r"\{([a-z,]+),\[\]\}", listed.stdout)  # argparse's {simulators,…,workers,[]}
    assert choices, listed.stdout
    assert sorted(choices[1].split(",")) == sorted(BENCHMARKS)


@pytest.mark.minutes
@pytest.mark.parametrize("name", BENCHMARKS)
def test_runs_at_small_size_and_records_its_figures(name: str, tmp_path: Path) -> None:
    done, rows = bench(["--quick", name], tmp_path)
    print(done.stdout)  # the tables, shown by pytest when something else fails
    assert rows, f"bench {name} recorded nothing"
    assert all(row["quick"] is True and row["machine"]["cpus"] for row in rows), rows[0]
    for row in rows:
        if "reference ratio" in row:  # the sweep beside the reference sweep: both worlds checked afterwards
            checked = (
                "cases over the cap",
                "keys placed twice",
                "reference chain breaks",
                "reference assets twice",
            )
            assert {key: row[key] for key in checked} == dict.fromkeys(checked, 0), row
            assert row["reference audit events"] > 0 and row["reference placed"] > 0, row
        if row["benchmark"] == "audit index":  # the export under the last head proved itself complete
            assert row["cases"] == 2_000 and row["events"] == 2_000 * 10 + 3 * 800, row
        if row["benchmark"] == "money":  # both placed the same statement alike (checked in the bench)
            assert row["lines"] > row["cases"] and row["accounts"] == row["cases"] + 1, row
            assert "transfer" in row["placed"] and "unidentified" in row["placed"], row


@pytest.mark.minutes
def test_scale_in_rounds_alternates_which_sweep_goes_first_and_records_the_median(tmp_path: Path) -> None:
    args = ["--quick", "scale", "--sizes", "300", "--database", "sqlite", "--first-sweep-only"]
    done, rows = bench([*args, "--rounds", "2"], tmp_path)
    rounds = [row for row in rows if row["benchmark"] == "scale"]
    assert [(row["round"], row["first"]) for row in rounds] == [("1 of 2", "reference"), ("2 of 2", "clerk")]
    (median,) = [row for row in rows if row["benchmark"] == "scale-median"]
    ratios = sorted(row["reference ratio"] for row in rounds)
    assert median["reference ratio"] == round((ratios[0] + ratios[1]) / 2, 2)
    assert median["each round"] == " ".join(f"{row['reference ratio']:.2f}" for row in rounds)
    assert median["checks"] == 0 and median["rounds"] == 2
    assert "the median of alternating rounds" in done.stdout


@pytest.mark.minutes
def test_watch_at_scale_lands_every_kind_of_deposit_and_checks_the_ledgers(tmp_path: Path) -> None:
    done, rows = bench(["--quick", "watch", "--scale"], tmp_path)
    print(done.stdout)
    assert [row["mode"] for row in rows] == ["push", "poll"], rows
    for row in rows:
        assert row["benchmark"] == "watch-scale" and row["watched"] > 2_000, row
        assert row["to freeze"] > 0 and row["missed"] == 0 and row["breaches"] == 0, row
        assert row["p50 s"] <= row["p95 s"] <= row["p99 s"], row
        assert len(row["req/s at each bank"].split(" / ")) == 3, row


def test_the_watch_at_scale_finds_a_freeze_the_law_forbids(tmp_path: Path) -> None:
    """The ledgers' check is no formality: a freeze on a protected account or on an outsider's is found."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'check.db'}")
    db.upgrade(engine)
    today = dt.date(2026, 12, 8)
    bank = BankSimulator("bank-a", "x", today=today)
    wage = bank.ledger.add(
        Holding("6222000000000001", "org-1", AssetKind.DEPOSIT, 50_000, purpose="migrant_wage")
    )
    stray = bank.ledger.add(
        Holding(watch_scale.outsider("bank-a", 7), "outsider-7", AssetKind.DEPOSIT, 9_000)
    )
    exempt = Exemptions(protected=frozenset({"migrant_wage"}))
    sessions = db.session_factory(engine)
    assert watch_scale.check_ledgers(sessions, {"bank-a": bank}, exempt, today) == []
    for n, holding in enumerate((wage, stray)):
        bank.ledger.place(f"key-{n}", "（2026）京0105执1号", holding.identifier, 1_000, 1)
    found = watch_scale.check_ledgers(sessions, {"bank-a": bank}, exempt, today)
    assert found == [
        "bank-a: a freeze on an account protected as migrant_wage",
        "bank-a: a freeze on an account of nobody in the case book",
    ]
    engine.dispose()
