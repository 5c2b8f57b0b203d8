"""The Prefect server on SQLite under concurrent writes: how often its database refuses a request as busy
(503) and what that costs the clients, with Prefect's own server (`prefect server start`, as shipped) and
with the one the clerk runs (`deployments/prefect_app.py`, which tries such a request again itself before
answering 503), side by side on the same load.

The load: CLIENTS clients at once, each taking RUNS flow runs one after another through the writes a served
case query makes (create the run, set it Running, set it Completed), on a fresh SQLite database per server.
Prefect's client waits 2 s (then 4, 8 …) before asking again after a 503, so each 503 that reaches it is
2 s or more of a judge's wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import ClientRetries, p95, record, server_retries, table
from connectors.simulator.serve import free_loopback_ports
from deployments.embedded import PREFECT_SERVER_START, SERVER_ENTRY, prefect_server, server_log

SERVERS = {"prefect server start (as shipped)": PREFECT_SERVER_START, "deployments.prefect_app": SERVER_ENTRY}


async def _load(api_url: str, clients: int, runs: int) -> tuple[list[float], list[str]]:
    """Seconds per run (its three writes) of every client, and the reasons of the client's retries."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Running

    @flow(name="busy-probe")
    def probe() -> None:
        """Never run: the flow the load's runs belong to."""

    seconds: list[float] = []
    retries = ClientRetries()
    with retries.listening(), temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:

            async def one_client() -> None:
                for _ in range(runs):
                    started = time.perf_counter()
                    run = await client.create_flow_run(probe)
                    await client.set_flow_run_state(run.id, Running())
                    await client.set_flow_run_state(run.id, Completed())
                    seconds.append(time.perf_counter() - started)

            await asyncio.gather(*(one_client() for _ in range(clients)))
    return seconds, retries.reasons


def run(quick: bool = False) -> None:
    clients, runs = (2, 3) if quick else (8, 10)
    rows: list[dict[str, Any]] = []
    for name, entry in SERVERS.items():
        with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
            settings = {
                "PREFECT_HOME": str(Path(tmp) / "prefect"),
                "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
            }
            with contextlib.ExitStack() as stack:
                stack.enter_context(mock.patch.dict(os.environ, settings))
                log = server_log()
                port = free_loopback_ports(1)[0]
                api_url = stack.enter_context(prefect_server(port, lambda _: None, entry=entry))
                started = time.perf_counter()
                seconds, reasons = asyncio.run(_load(api_url, clients, runs))
                wall = time.perf_counter() - started
            rows.append(
                {
                    "server": name,
                    "clients": clients,
                    "runs": len(seconds),
                    "503s at the client": sum("503" in r for r in reasons),
                    "tried again in the server": server_retries(log),
                    "p50 s": round(statistics.median(seconds), 3),
                    "p95 s": round(p95(seconds), 3),
                    "max s": round(max(seconds), 3),
                    "wall s": round(wall, 2),
                    "runs/s": round(len(seconds) / wall, 1),
                }
            )
    table(
        f"Prefect on SQLite under concurrent writes ({clients} clients, {runs} runs each: create, Running, "
        "Completed); each 503 at the client is a wait of 2 s or more",
        rows,
    )
    record("busy", rows, quick=quick)
