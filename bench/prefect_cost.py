"""What Prefect costs: the sweep's first step (ask one registry about every debtor and record the answers)
with one Prefect task per request, at several request sizes down to one task per debtor, beside the same
coroutines with no Prefect, side by side in one run. Each variant runs in a process of its own
(`bench/tasks.py`) against the same simulators and case book, with Prefect's temporary in-process server:
time, CPU and peak memory show why the flows batch, and how big a batch should be.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from bench.common import record, run_module, table
from bench.sweep import clerk_env, configs, import_cases, simulators
from clerk.settings import PREFECT_DEFAULTS


def variant(env: dict[str, str], mode: str, batch: int) -> dict[str, Any]:
    _, stdout = run_module(["bench.tasks", mode, str(batch)], env)
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def run(quick: bool = False) -> None:
    debtors = 300 if quick else 2_000
    batches = [1, 200] if quick else [1, 10, 50, 200, 1000]
    regs = configs()[:1]  # one bank
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-prefect-") as tmp:
        env = (
            PREFECT_DEFAULTS
            | clerk_env(f"sqlite:///{tmp}/clerk.db", regs)
            | {"PREFECT_LOGGING_LEVEL": "WARNING"}
        )
        with simulators(debtors, Path(tmp), regs) as served:
            import_cases(env, served.case_file)
            variant(env, "plain", 200)  # warm-up: the first answers record the hits; the rest compare alike
            for batch in batches:
                plain = variant(env, "plain", batch)
                tasks = variant(env, "tasks", batch)
                rows.append(_row(batch, tasks, plain))
    table(
        f"what Prefect costs ({debtors:,} debtors asked of one bank, 20 requests in flight, "
        "temporary Prefect server)",
        rows,
    )
    record("prefect_cost", rows, quick=quick)


def _row(batch: int, tasks: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    count = -(-tasks["lookups"] // batch)
    per_task = round(1000 * (tasks["seconds"] - plain["seconds"]) / count, 2)
    return {
        "debtors per request": batch,
        "tasks": count,
        "no Prefect s": round(plain["seconds"], 2),
        "task per request s": round(tasks["seconds"], 2),
        "× no Prefect": round(tasks["seconds"] / plain["seconds"], 2),
        "lookups/s in tasks": round(tasks["lookups"] / tasks["seconds"], 1),
        # Below zero the difference is the machine's noise, not a cost: said so rather than printed negative.
        "ms per task": per_task if per_task > 0 else "below noise",
        "cpu s (tasks, plain)": f"{tasks['cpu_s']:.1f}, {plain['cpu_s']:.1f}",
        "peak MB (tasks, plain)": f"{tasks['peak_rss_mb']:.0f}, {plain['peak_rss_mb']:.0f}",
    }
