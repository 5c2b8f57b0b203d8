"""The production shape on 127.0.0.1: `clerk up --workers 2` (PostgreSQL from Debian's packages for the case
book and the Prefect server, the server with basic auth, `clerk setup`, two process workers), a province sweep
of simulated debtors in two shards, then `clerk down`.

One shard's flow-run process is killed with SIGKILL mid-sweep (as if its machine died); the province sweep
takes the shard over. Checked: every debtor answered by every registry, exactly once in the shard that ran
once (the killed shard's debtors with a lookup left unanswered are asked again), the registries' quotas
never exceeded (the simulators refuse, with 429, what goes over a bucket of `RATE` a second; without the
global limits two workers send twice that, and a quarter of the lookups fail), nothing frozen twice or beyond
what a case owes, the report names both shards, their runs and the workers they ran on, and the audit chain
holds.

Slow (PostgreSQL, a Prefect server, two workers and five flow-run processes start here): marked `server`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clerk.casebook import cases
from clerk.store import db, tree
from connectors.config import registries_json
from connectors.simulator.base import Quota
from connectors.simulator.serve import free_loopback_ports
from deployments import setup
from models.supervision import bureau_today
from models.tables import Case, ControlMeasure, Debtor, Query, QueryRun
from tests.world import World, served_world

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOW = dt.datetime.now(dt.UTC)
RATE = 4  # requests a second each registry allows, and each registry's requests_per_second
pytestmark = [pytest.mark.server, pytest.mark.postgres, pytest.mark.minutes]


def clerk(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "clerk"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"clerk {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[World, dict[str, str], dict[str, object]]]:
    # PostgreSQL runs as the postgres user, who cannot enter pytest's private temporary directories.
    data = Path(tempfile.mkdtemp(prefix="clerk-up-"))
    data.chmod(0o755)
    with served_world(
        tmp_path, debtors=120, seed=5, now=NOW, batch_size=5, requests_per_second=RATE
    ) as world:
        for sim in world.simulators.values():
            sim.quota = Quota(rate=RATE, burst=RATE + 1)
        pg_port, prefect_port = free_loopback_ports(2)
        env = dict(os.environ) | {
            "CLERK_DATA_DIR": str(data),
            "CLERK_REGISTRIES": registries_json(world.configs),
            "CLERK_NOTIFIER_URL": world.sms_url,
            "CLERK_COURT_BANK_URL": world.court_bank_url,
            "CLERK_UNCONFIRMED_AFTER_S": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        env.pop("CLERK_DATABASE_URL", None)
        try:
            clerk(
                "up", "--workers", "2", "--pg-port", str(pg_port), "--port", str(prefect_port),
                "--no-schedules", env=env,
            )  # fmt: skip
            shape = json.loads((data / "up" / "state.json").read_text(encoding="utf-8"))
            yield world, env, shape
        finally:
            subprocess.run([str(BIN / "clerk"), "down"], env=env, cwd=ROOT, timeout=120, check=False)
            shutil.rmtree(data, ignore_errors=True)


def prefect_call(client_env: dict[str, str], code: str) -> object:
    """Run `code` (an async body using `client`, ending in `return`) against the shape's Prefect server."""
    program = (
        "import asyncio, json\nfrom prefect.client.orchestration import get_client\n"
        "async def main():\n    async with get_client() as client:\n"
        + "".join(f"        {line}\n" for line in code.strip().splitlines())
        + "print(json.dumps(asyncio.run(main()), default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], env=client_env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def kill_when_running(client_env: dict[str, str], name: str, after_s: float) -> bool:
    """SIGKILL the process of the flow run called `name` once it has run `after_s`, as if its machine died."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = prefect_call(
            client_env,
            f"""
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[{name!r}])))
return [[r.state_type.value if r.state_type else "", r.infrastructure_pid, r.start_time] for r in runs]
""",
        )
        for state, pid, started in found:  # type: ignore[attr-defined]
            if state == "RUNNING" and pid and started:
                ran = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(started)
                if ran.total_seconds() >= after_s:
                    os.kill(int(pid), signal.SIGKILL)
                    return True
        time.sleep(0.5)
    return False


def artifact_rows(client_env: dict[str, str], key: str) -> list[dict[str, str]]:
    data = prefect_call(
        client_env,
        f"""
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
(artifact,) = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[{key!r}])), limit=1)
return artifact.data
""",
    )
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]


def test_two_workers_share_a_province_sweep_within_the_registries_limits(
    pool: tuple[World, dict[str, str], dict[str, object]],
) -> None:
    world, env, shape = pool
    book = env | {"CLERK_DATABASE_URL": str(shape["database_url"])}
    clerk("cases", "import", str(world.case_file), env=book)
    client = env | {"PREFECT_API_URL": str(shape["api_url"]), "PREFECT_API_AUTH_STRING": str(shape["auth"])}
    status = clerk("status", env=env).stdout
    assert status.count("running") == 3, status  # the server and two workers

    automations = prefect_call(
        client,
        f"return [a.name for a in await client.read_automations_by_name({setup.ZOMBIES!r}) if a.enabled]",
    )
    assert automations == [setup.ZOMBIES], "a run whose machine dies is marked Crashed, to be taken over"
    limits = subprocess.run(
        [str(BIN / "prefect"), "global-concurrency-limit", "ls"], env=client, capture_output=True, text=True
    )
    for code in world.simulators:
        assert f"registry-{code}" in limits.stdout, limits.stdout + limits.stderr

    province = subprocess.Popen(
        [
            str(BIN / "prefect"), "deployment", "run", "province-sweep/province-sweep",
            "-p", "shards=2", "--watch", "--watch-timeout", "400",
        ],
        env=client, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    killed = kill_when_running(client, "shard 1 of 2", after_s=3)
    output, _ = province.communicate(timeout=450)
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in Path(str(shape["home"]), "logs").glob("*"))
    assert province.returncode == 0 and "Completed" in output, output + logs
    report = artifact_rows(client, "province-sweep")
    assert [(r["shard"], r["runs"], r["state"]) for r in report] == [
        ("1 of 2", 2, "Completed"),  # killed, then taken over
        ("2 of 2", 1, "Completed"),
    ]
    assert all(r["ran on"].startswith("clerk-worker-") for r in report), report
    assert killed

    # The killed run may have left measures it had sent unconfirmed: collect settles them by their keys.
    clerk("run", "collect", env=book | client)

    sessions = db.session_factory(db.engine_for(str(shape["database_url"])))
    with sessions() as session:
        debtors = session.scalar(select(func.count()).select_from(Debtor))
        answers = session.execute(
            select(Query.debtor_id, Query.registry_id, func.count())
            .where(Query.status.in_(("answered", "pending")))
            .group_by(Query.debtor_id, Query.registry_id)
        ).all()
        assert len(answers) == debtors * len(world.simulators), "every debtor answered by every registry"
        # Shard 2 (odd shard keys: their first case's id) ran once: each of its debtors asked once of each
        # registry. Shard 1's killed run left lookups sent and never answered: its take-over asks those
        # debtors again, of every registry.
        keys = dict(
            session.execute(select(Debtor.id, func.coalesce(Debtor.shard_key, Debtor.id))).tuples().all()
        )
        assert {n for debtor, _, n in answers if keys[debtor] % 2 == 1} == {1}
        assert max(n for _, _, n in answers) <= 2
        runs = [
            r.summary
            for r in session.scalars(select(QueryRun).where(QueryRun.trigger == "sweep"))
            if r.summary  # the killed run never finished
        ]
        assert sorted((s["shard"], s["shards"]) for s in runs) == [(0, 2), (1, 2)]
        assert len({s["pid"] for s in runs}) == 2, "each shard ran in a flow-run process of its own"
        assert not session.scalar(
            select(func.count()).select_from(ControlMeasure).where(ControlMeasure.status == "requested")
        ), "nothing is left unconfirmed"

        ledger = world.ledger_measures()
        assert ledger, "the sweep froze and seized something"
        ours = {m.idempotency_key: m for m in session.scalars(select(ControlMeasure))}
        assert set(ledger) <= set(ours)
        for case in session.scalars(select(Case)):
            held = sum(
                getattr(ledger.get(k), "held_fen", 0) or 0 for k, m in ours.items() if m.case_id == case.id
            )
            assert held <= cases.owed(case, bureau_today()).remaining, case.case_number
        assert len({m.identifier for m in ledger.values()}) == len(ledger), (
            "no asset holds two of our measures"
        )
        assert tree.verify(session).ok

    for code, sim in world.simulators.items():
        assert sim.requests_seen > 2 * sim.quota.burst, code  # the quota was put to the test …
        assert sim.quota.refused == 0, f"{code}: {sim.quota.refused} requests over the registry's quota"
