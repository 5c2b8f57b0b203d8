"""How fast the simulators are: a seeded world generated, and subject lookups per second per simulator
process, through each adapter (batch queries of 200 subjects, 4 in flight), side by side in one run.

The simulators run in their own process (`clerk sim`), as in the demo; this process only asks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.common import record, table
from bench.sweep import read_subjects, simulators
from connectors.adapter import HttpConnector
from connectors.base import QueryRequest, Subject, SubjectStatus
from connectors.config import RegistryConfig, simulated_registries
from connectors.loader import build
from connectors.simulator.serve import build_world, free_loopback_ports

BATCH, IN_FLIGHT = 200, 4


def _configs() -> list[RegistryConfig]:
    kinds = [
        ("bank", "bank", "bank-json"),
        ("realestate", "real_estate", "real-estate-xml"),
        ("vehicles", "vehicle", "vehicle-json"),
    ]
    return [
        RegistryConfig(
            code=code,
            name=code,
            kind=kind,
            adapter=adapter,
            base_url=f"http://127.0.0.1:{port}",
            credential=SecretStr("sim-token"),
            requests_per_second=0,
            max_connections=IN_FLIGHT,
        )
        for (code, kind, adapter), port in zip(kinds, free_loopback_ports(len(kinds)), strict=True)
    ]


async def _ask(
    connector: HttpConnector, batches: list[list[Subject]], seconds: float
) -> tuple[int, int, float]:
    """Query random batches with IN_FLIGHT requests open until `seconds` pass: (subjects, hits, elapsed)."""
    rng = random.Random(1)
    done = hits = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal done, hits
        while time.perf_counter() < deadline:
            batch = rng.choice(batches)
            request = QueryRequest(request_ref=f"b-{rng.getrandbits(48)}", subjects=tuple(batch))
            reply = await connector.query(request)
            done += len(batch)
            hits += sum(1 for r in reply.results if r.status is SubjectStatus.FOUND)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return done, hits, time.perf_counter() - started


async def _lookups(
    configs: list[RegistryConfig], subjects: list[Subject], seconds: float
) -> list[dict[str, Any]]:
    connectors = build(configs, [c.adapter for c in configs])
    batches = [subjects[i : i + BATCH] for i in range(0, len(subjects), BATCH)]
    rows = []
    try:
        for config in configs:
            done, hits, elapsed = await _ask(connectors[config.code], batches, seconds)
            rows.append(
                {
                    "registry": config.code,
                    "adapter": config.adapter,
                    "subjects": done,
                    "seconds": elapsed,
                    "lookups_per_s": done / elapsed,
                    "hit_share": hits / max(done, 1),
                }
            )
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))
    return rows


def run(quick: bool = False) -> None:
    debtors = 5_000 if quick else 100_000
    seconds = 2.0 if quick else 10.0
    world = build_world(simulated_registries(), debtors, seed=1, now=dt.datetime.now(dt.UTC))
    generation = [
        {
            "debtors": debtors,
            "seconds": world.seconds,
            "debtors_per_s": debtors / world.seconds,
            "goal": "100,000 in under 60 s",
        }
    ]
    table("world generation (in this process)", generation)
    record("simulators.generate", generation, quick=quick)

    configs = _configs()
    with tempfile.TemporaryDirectory() as tmp, simulators(debtors, Path(tmp), configs) as served:
        rows = asyncio.run(_lookups(configs, read_subjects(served.case_file), seconds))
    table(
        f"subject lookups against one simulator process ({debtors:,} debtors, batches of {BATCH}, "
        f"{IN_FLIGHT} in flight; goal: thousands per second)",
        rows,
    )
    record("simulators.lookups", rows, quick=quick)
