"""prefect.yaml (the production shape) and `clerk serve` (one machine) deploy the same flows on the same
schedules: checked here, so that one cannot drift from the other."""

from __future__ import annotations

from pathlib import Path

import yaml

from clerk.settings import Settings
from deployments.embedded import SCHEDULES, scheduled_flows
from flows.province import SHARD_DEPLOYMENT, province_sweep

ROOT = Path(__file__).parents[2]


def test_prefect_yaml_and_clerk_serve_agree() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = {d["name"]: d for d in spec["deployments"]}
    defaults = Settings()
    assert set(deployments) == {*SCHEDULES, *POOL_ONLY, "case-query", "deduction"}
    flows = scheduled_flows() | {"province-sweep": province_sweep}
    for name, (field, _) in SCHEDULES.items():
        scheduled = POOL_SCHEDULES.get(name, name)
        deployment = deployments[scheduled]
        module, _, function = deployment["entrypoint"].partition(":")
        assert flows[scheduled].fn.__name__ == function and flows[scheduled].name == scheduled
        assert Path(ROOT / module).exists()
        (schedule,) = deployment["schedules"]
        assert schedule == {
            "cron": getattr(defaults, field),
            "timezone": "Asia/Shanghai",
            "slug": scheduled,
        }
    for name in ("case-query", "deduction", "sweep", "sweep-shard"):
        assert "schedules" not in deployments[name], name
    assert deployments["sweep-shard"]["entrypoint"] == deployments["sweep"]["entrypoint"]
    assert SHARD_DEPLOYMENT == "sweep/sweep-shard"


#: On a pool of workers the hourly sweep is the province sweep, split into shards (flows/province.py); the
#: whole-book sweep stays on demand there, so that the two never run side by side.
POOL_SCHEDULES = {"sweep": "province-sweep"}
POOL_ONLY = {"province-sweep", "sweep-shard"}
