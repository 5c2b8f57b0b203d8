"""prefect.yaml (the production shape) and `clerk serve` (one machine) deploy the same flows on the same
schedules, both from the one catalog (deployments/catalog.py) and the settings: checked here, so that
neither can drift from the other."""

from __future__ import annotations

from pathlib import Path

import yaml

from clerk.settings import Settings
from deployments import catalog
from flows.province import SHARD_DEPLOYMENT

ROOT = Path(__file__).parents[2]


def test_prefect_yaml_and_clerk_serve_agree() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = {d["name"]: d for d in spec["deployments"]}
    defaults = Settings()
    served = {d.name for d in catalog.SERVED}
    assert set(deployments) == served | POOL_ONLY
    assert served == {*catalog.SCHEDULED, "case-query", "deduction"}
    for name in catalog.SCHEDULED:
        scheduled = POOL_SCHEDULES.get(name, name)
        deployment = deployments[scheduled]
        module, _, function = deployment["entrypoint"].partition(":")
        flow = catalog.BY_NAME[scheduled].flow()
        assert flow.fn.__name__ == function and flow.name == scheduled
        assert Path(ROOT / module).exists()
        (schedule,) = deployment["schedules"]
        assert schedule == {
            "cron": getattr(defaults, catalog.BY_NAME[name].serve_cron or ""),
            "timezone": "Asia/Shanghai",
            "slug": scheduled,
        }
    for name in ("case-query", "deduction", "sweep", "sweep-shard"):
        assert "schedules" not in deployments[name], name
    assert deployments["sweep-shard"]["entrypoint"] == deployments["sweep"]["entrypoint"]
    assert SHARD_DEPLOYMENT == "sweep/sweep-shard"


def test_prefect_yaml_is_the_catalog_on_the_default_schedules() -> None:
    assert (ROOT / "prefect.yaml").read_text(encoding="utf-8") == catalog.prefect_yaml(Settings()), (
        "prefect.yaml is generated: run python -m deployments.catalog --write"
    )


def test_a_bureaus_schedule_reaches_the_pool_through_its_settings() -> None:
    spec = yaml.safe_load(catalog.prefect_yaml(Settings(collect_cron="*/2 * * * *")))
    (collect,) = [d for d in spec["deployments"] if d["name"] == "collect"]
    assert collect["schedules"][0]["cron"] == "*/2 * * * *"


#: On a pool of workers the hourly sweep is the province sweep, split into shards (flows/province.py); the
#: whole-book sweep stays on demand there, so that the two never run side by side.
POOL_SCHEDULES = {"sweep": "province-sweep"}
POOL_ONLY = {"province-sweep", "sweep-shard"}
