"""prefect.yaml (the production shape) and `clerk serve` (one machine) deploy the same flows on the same
schedules: checked here, so that one cannot drift from the other."""

from __future__ import annotations

from pathlib import Path

import yaml

from clerk.settings import Settings
from deployments.embedded import SCHEDULES, scheduled_flows

ROOT = Path(__file__).parents[2]


def test_prefect_yaml_and_clerk_serve_agree() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = {d["name"]: d for d in spec["deployments"]}
    defaults = Settings()
    assert set(deployments) == {*SCHEDULES, "case-query", "deduction"}
    flows = scheduled_flows()
    for name, (field, _) in SCHEDULES.items():
        deployment = deployments[name]
        module, _, function = deployment["entrypoint"].partition(":")
        assert flows[name].fn.__name__ == function and flows[name].name == name
        assert Path(ROOT / module).exists()
        (schedule,) = deployment["schedules"]
        assert schedule == {"cron": getattr(defaults, field), "timezone": "Asia/Shanghai", "slug": name}
    for name in ("case-query", "deduction"):
        assert "schedules" not in deployments[name]
