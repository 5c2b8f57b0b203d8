"""The province sweep on a pool of 1, 2 and 4 workers: lookups a second of the whole run, side by side.

For each count, a fresh production shape on this machine (`clerk up --workers N`: PostgreSQL, the Prefect
server, N process workers, registries' global limits on), a fresh world in `clerk sim` (five registries,
no request rate, as the sweep benchmark), its cases imported; then one `province-sweep` run with N shards,
timed from the request to its end (`prefect deployment run --watch`). The run's own time (its Running to
Completed, from Prefect's states) is printed beside it: the difference is the worker picking it up.

On this 2-core machine the workers share two cores with PostgreSQL, the Prefect server and the simulators,
so more workers than cores cannot go faster: the figures say how much of the sweep parallelises, not how a
pool of machines scales.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import record, run_module, table
from bench.sweep import configs, simulators
from connectors.config import registries_json
from connectors.simulator.serve import free_loopback_ports

ROOT = Path(__file__).resolve().parent.parent


def _clerk(args: list[str], env: dict[str, str]) -> str:
    return run_module(["cli", *args], env, timeout=1800)[1]


def _run_seconds(client: dict[str, str]) -> float:
    """The last province-sweep run's Running → Completed seconds, from its states."""
    code = """
import asyncio
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
async def main():
    async with get_client() as c:
        (run,) = await c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["province-sweep"])))
        print(run.total_run_time.total_seconds())
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], env=client, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(workers: int, debtors: int) -> dict[str, Any]:
    regs = configs()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        Path(tmp).chmod(0o755)  # PostgreSQL runs as the postgres user, who must reach its data directory
        pg_port, prefect_port = free_loopback_ports(2)
        env = dict(os.environ) | {
            "CLERK_DATA_DIR": f"{tmp}/var",
            "CLERK_REGISTRIES": registries_json(regs),
            "CLERK_NOTIFIER_URL": "",
            "CLERK_COURT_BANK_URL": "",
            "CLERK_LOG_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        env.pop("CLERK_DATABASE_URL", None)
        with simulators(debtors, Path(tmp), regs) as served:
            up = ["up", "--workers", str(workers), "--pg-port", str(pg_port), "--port", str(prefect_port)]
            try:
                _clerk([*up, "--no-schedules"], env)
                shape = json.loads(Path(tmp, "var", "up", "state.json").read_text(encoding="utf-8"))
                _clerk(
                    ["cases", "import", str(served.case_file)],
                    env | {"CLERK_DATABASE_URL": shape["database_url"]},
                )
                client = env | {"PREFECT_API_URL": shape["api_url"], "PREFECT_API_AUTH_STRING": shape["auth"]}
                wall, out = run_module(
                    ["prefect", "deployment", "run", "province-sweep/province-sweep",
                     "-p", f"shards={workers}", "--watch", "--watch-timeout", "3600"],
                    client,
                )  # fmt: skip
                if "Completed" not in out:
                    raise RuntimeError(f"the province sweep did not complete: {out[-2000:]}")
                run_s = _run_seconds(client)
            finally:
                subprocess.run(
                    [sys.executable, "-m", "cli", "down"],
                    env=env,
                    cwd=ROOT,
                    capture_output=True,
                    check=False,
                )
    lookups = debtors * len(regs)
    return {
        "workers": workers,
        "shards": workers,
        "debtors": debtors,
        "lookups": lookups,
        "wall s": round(wall, 1),
        "run s": round(run_s, 1),
        "lookups/s (wall)": round(lookups / wall),
    }


def run(quick: bool = False) -> None:
    debtors = 300 if quick else 5_000
    counts = (2,) if quick else (1, 2, 4)  # quick: one shape, so that CI stays short
    rows = [measure(n, debtors) for n in counts]
    if counts[0] == 1:
        base = rows[0]["lookups/s (wall)"]
        for row in rows:
            row["× 1 worker"] = round(row["lookups/s (wall)"] / base, 2)
    table(
        f"province sweep, {debtors:,} debtors × 5 registries, first sweep, on N workers of one 2-core "
        "machine "
        "(wall: from `prefect deployment run` to its end; run: the parent run's own time)",
        rows,
    )
    record("workers", rows, quick=quick)
