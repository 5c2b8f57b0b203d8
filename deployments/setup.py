"""`clerk setup`: what a Prefect server needs before workers can share a province's sweep, done idempotently
against the server PREFECT_API_URL names (run it again after changing registries or prefect.yaml):

- the process work pool `clerk-process`;
- one global rate limit per registry (flows/limits.py): Prefect runs unthrottled, with a warning only, when a
  named limit is missing, so the limits are created here, never left to chance;
- the automation that marks a flow run Crashed when its heartbeats stop (its worker's machine died), so
  that the province sweep takes its shard over instead of waiting for ever (Prefect's "zombie flows" recipe);
- the deployments of the catalog (`deployments/catalog.py`, as prefect.yaml with this environment's
  schedules; `prefect deploy --all`), their schedules active or paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clerk.settings import get_settings
from connectors.config import RegistryConfig
from deployments import catalog
from flows.limits import limit_name, limit_of

ROOT = Path(__file__).resolve().parent.parent
POOL = "clerk-process"
ZOMBIES = "query-clerk: crash flow runs whose heartbeats stopped"
#: Seconds between a flow run's heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, at least 30), and how long
#: without one before the run is marked Crashed.
HEARTBEAT_S = 30
SILENCE_S = 90


class SetupError(RuntimeError):
    """A step of setting up the production shape failed; the message says which and why."""


@dataclass
class SetupReport:
    pool: str
    limits: list[tuple[str, int, float]]
    unlimited: list[str]
    automation: str
    deployments: list[str]
    schedules_paused: int


def _prefect(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "prefect", "--no-prompt", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SetupError(f"prefect {' '.join(args)} failed: {(done.stdout + done.stderr)[-2000:]}")
    return done


async def ensure_limits(configs: list[RegistryConfig]) -> tuple[list[tuple[str, int, float]], list[str]]:
    """Create or update each registry's rate limit; returns (name, slots, per second) and the registries
    without a rate (requests_per_second 0), which stay unthrottled."""
    from prefect.client.orchestration import get_client

    made, unlimited = [], []
    async with get_client() as client:
        for config in configs:
            limit = limit_of(config)
            if limit is None:
                unlimited.append(config.code)
                continue
            slots, rate = limit
            await client.upsert_global_concurrency_limit_by_name(limit_name(config.code), slots, rate)
            made.append((limit_name(config.code), slots, rate))
    return made, unlimited


async def ensure_zombie_automation() -> str:
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    async with get_client() as client:
        if await client.read_automations_by_name(ZOMBIES):
            return ZOMBIES
    await Automation(
        name=ZOMBIES,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=dt.timedelta(seconds=SILENCE_S),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {SILENCE_S} s: its worker's process or machine is gone",
            )
        ],
    ).acreate()
    return ZOMBIES


async def _pause_schedules() -> int:
    """Pause every schedule, and delete the runs the scheduler had already put ahead (a paused schedule
    leaves them to start)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    paused = 0
    async with get_client() as client:
        deployments = await client.read_deployments()
        for deployment in deployments:
            for schedule in await client.read_deployment_schedules(deployment.id):
                if schedule.active:
                    await client.update_deployment_schedule(deployment.id, schedule.id, active=False)
                    paused += 1
        ahead = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id for d in deployments])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )
        for run in ahead:
            await client.delete_flow_run(run.id)
    return paused


@contextlib.contextmanager
def _this_server() -> Iterator[None]:
    """Prefect's client with the server of the environment as it is now: Prefect reads its settings once, at
    import, and `clerk up` names the server it started only afterwards."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: os.environ["PREFECT_API_URL"]}
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        updates[PREFECT_API_AUTH_STRING] = os.environ["PREFECT_API_AUTH_STRING"]
    with temporary_settings(updates=updates):
        yield


def setup(
    configs: list[RegistryConfig], say: Callable[[str], None], *, schedules: bool = True
) -> SetupReport:
    """Everything above against the server of PREFECT_API_URL (which must be set)."""
    if not os.environ.get("PREFECT_API_URL"):
        raise SetupError("PREFECT_API_URL is not set: name the Prefect server to set up")
    env = dict(os.environ) | {"QUERY_CLERK_HOME": os.environ.get("QUERY_CLERK_HOME", str(ROOT))}
    say(f"work pool {POOL} (process)…")
    _prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    with _this_server():
        limits, unlimited = asyncio.run(ensure_limits(configs))
        automation = asyncio.run(ensure_zombie_automation())
    for name, slots, rate in limits:
        say(f"global rate limit {name}: {rate:g} requests a second (bursts of {slots})")
    for code in unlimited:
        say(f"registry {code} has no requests_per_second: its requests are not limited")
    say(f"automation: {automation} ({SILENCE_S} s)")
    say("deployments of the catalog, on the settings' schedules (prefect deploy --all)…")
    # prefect.yaml as the settings of this environment make it (the committed file holds the defaults).
    with tempfile.NamedTemporaryFile("w", dir=ROOT, prefix=".prefect-", suffix=".yaml") as spec:
        spec.write(catalog.prefect_yaml(get_settings()))
        spec.flush()
        out = _prefect("deploy", "--all", "--prefect-file", spec.name, env=env).stdout
    deployed = sorted(
        line.split("'")[1] for line in out.splitlines() if "successfully created" in line and "'" in line
    )
    with _this_server():
        paused = 0 if schedules else asyncio.run(_pause_schedules())
    if paused:
        say(
            f"{paused} schedules paused (start them in the UI, or run `clerk setup` again without "
            "--no-schedules)"
        )
    return SetupReport(POOL, limits, unlimited, automation, deployed, paused)
