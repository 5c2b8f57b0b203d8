"""What one request to a registry costs the clerk's process: CPU per request and requests per second through
`RegistryClient.call` (retries, rate limiter, breaker, bounded body: the path every lookup and control request
takes), over httpx's own transport (httpcore on anyio) and over aiohttp (`httpx_aiohttp`, the default), at 4
and 20 connections, side by side in one run against the same bank simulator (`clerk sim`, its own process).

Each configuration runs twice, interleaved, and the figures are the means: these machines are noisy.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

import httpx

from bench.common import record, table
from bench.sweep import configs, simulators
from connectors.config import RegistryConfig
from connectors.http import ClientLimits, RegistryClient

TRANSPORTS = ("httpx", "aiohttp")
CONNECTIONS = (4, 20)


async def cpu_per_request(
    registry: RegistryConfig, transport: str, connections: int, requests: int
) -> tuple[float, float]:
    """(µs of this process's CPU per request, requests per second) for `requests` health calls, as many at
    once as there are connections."""
    limits = ClientLimits(max_connections=connections, requests_per_second=0)
    own = None
    if transport == "httpx":
        pool = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        own = httpx.AsyncHTTPTransport(limits=pool)
    client = RegistryClient(registry.code, registry.base_url, registry.credential, limits, transport=own)
    try:
        await client.call("GET", "/v1/health", reference="warm", safe=True)  # connections opened, code loaded

        async def call(i: int) -> None:
            await client.call("GET", "/v1/health", reference=f"r{i}", safe=True)

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(call(i) for i in range(requests)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await client.aclose()
    return 1e6 * cpu / requests, requests / wall


def run(quick: bool = False) -> None:
    requests = 300 if quick else 5_000
    regs = configs()
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, simulators(100, Path(tmp), regs):
        for _ in range(2):
            for connections in CONNECTIONS:
                for transport in TRANSPORTS:
                    figures = asyncio.run(cpu_per_request(regs[0], transport, connections, requests))
                    runs.setdefault((transport, connections), []).append(figures)
    means = {key: (mean(f[0] for f in done), mean(f[1] for f in done)) for key, done in runs.items()}
    rows: list[dict[str, Any]] = [
        {"transport": transport, "connections": connections, "requests": requests,
         "µs CPU/request": round(cpu), "requests/s": round(rate),
         "CPU × httpx": round(cpu / means["httpx", connections][0], 2)}
        for (transport, connections), (cpu, rate) in means.items()
    ]  # fmt: skip
    table(
        "one request's cost to the clerk's process, by transport (RegistryClient.call, health, one bank)",
        rows,
    )
    record("transport", rows, quick=quick)
