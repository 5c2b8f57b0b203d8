"""A seeded world served over real HTTP for integration tests: simulators on free loopback ports, their
settings, and the matching case file."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clerk.casebook.casefile import write_case_file
from connectors.config import RegistryConfig, placeholder_configs, registries_json
from connectors.simulator.base import RegistrySimulator
from connectors.simulator.court_bank import CourtBankSimulator
from connectors.simulator.faults import FaultPlan
from connectors.simulator.serve import build_world, world_in_background
from connectors.simulator.sms import SmsGatewaySimulator
from connectors.simulator.world import case_rows


@dataclass
class World:
    configs: list[RegistryConfig]
    simulators: dict[str, RegistrySimulator]
    case_file: Path
    debtor_ids: set[str]
    debtor_names: set[str]
    sms: SmsGatewaySimulator
    sms_url: str
    court_bank: CourtBankSimulator
    court_bank_url: str

    def ledger_measures(self) -> dict[str, object]:
        """Every measure every simulator holds, by idempotency key."""
        return {m.key: m for sim in self.simulators.values() for m in sim.ledger.measures.values()}

    def holdings_of_debtors(self) -> int:
        return sum(
            1
            for sim in self.simulators.values()
            for h in sim.ledger.holdings.values()
            if h.owner_id in self.debtor_ids
        )


@contextlib.contextmanager
def served_world(
    tmp: Path, debtors: int, seed: int, now: dt.datetime, faults: FaultPlan | None = None, **limits: object
) -> Iterator[World]:
    placeholders = placeholder_configs(**({"batch_size": 50} | limits))
    world = build_world(placeholders, debtors, seed, now, faults)
    case_file = tmp / "world-cases.csv"
    write_case_file(case_file, case_rows(world.debtors, seed, now.date()))
    with world_in_background(world) as configs:
        yield World(
            configs,
            {s.code: s for s, _, _ in world.simulators},
            case_file,
            {d.id_number for d in world.debtors},
            {d.name for d in world.debtors},
            world.sms,
            world.sms_url or "",
            world.court_bank,
            world.court_bank_url or "",
        )


@contextlib.contextmanager
def flow_world(
    tmp: Path, monkeypatch: Any, debtors: int, seed: int, now: dt.datetime, **limits: object
) -> Iterator[World]:
    """A served world whose settings the flows read (registries, SMS gateway) and whose cases are imported
    through the CLI: what the flow tests start from."""
    from typer.testing import CliRunner

    from clerk.settings import get_settings
    from cli import app

    with served_world(tmp, debtors=debtors, seed=seed, now=now, **limits) as served:
        monkeypatch.setenv("CLERK_REGISTRIES", registries_json(served.configs))
        monkeypatch.setenv("CLERK_UNCONFIRMED_AFTER_S", "0")
        monkeypatch.setenv("CLERK_NOTIFIER_URL", served.sms_url)
        monkeypatch.setenv("CLERK_COURT_BANK_URL", served.court_bank_url)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["cases", "import", str(served.case_file)])
        assert result.exit_code == 0, result.output
        yield served
