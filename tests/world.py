"""A seeded world served over real HTTP for integration tests: simulators on free loopback ports, their
settings, and the matching case file."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from connectors.base import RegistryKind
from connectors.config import RegistryConfig
from connectors.simulator.base import RegistrySimulator
from connectors.simulator.serve import build_world, world_in_background
from connectors.simulator.sms import SmsGatewaySimulator
from connectors.simulator.world import write_case_file

KINDS = [
    ("bank-a", RegistryKind.BANK, "bank-json"),
    ("bank-b", RegistryKind.BANK, "bank-json"),
    ("realestate", RegistryKind.REAL_ESTATE, "real-estate-xml"),
    ("vehicles", RegistryKind.VEHICLE, "vehicle-json"),
]


@dataclass
class World:
    configs: list[RegistryConfig]
    simulators: dict[str, RegistrySimulator]
    case_file: Path
    debtor_ids: set[str]
    sms: SmsGatewaySimulator
    sms_url: str

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
def served_world(tmp: Path, debtors: int, seed: int, now: dt.datetime, **limits: object) -> Iterator[World]:
    placeholders = [
        RegistryConfig(
            code=code,
            name=code,
            kind=kind,
            adapter=adapter,
            base_url="http://127.0.0.1:9",
            credential=SecretStr("sim-token"),
            requests_per_second=0,
            batch_size=50,
            **limits,
        )  # type: ignore[arg-type]
        for code, kind, adapter in KINDS
    ]
    world = build_world(placeholders, debtors, seed, now)
    case_file = tmp / "world-cases.csv"
    write_case_file(case_file, world.debtors, seed, now.date())
    with world_in_background(world) as configs:
        yield World(
            configs,
            {s.code: s for s, _, _ in world.simulators},
            case_file,
            {d.id_number for d in world.debtors},
            world.sms,
            world.sms_url or "",
        )
