"""How one registry is reached: read from settings (`CLERK_REGISTRIES`, a JSON list) and checked at start."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.base import RegistryKind
from connectors.http import ClientLimits

SIM_CREDENTIAL = "sim-token"  # the simulators' credential; a real registry's comes from its settings
SIM_SMS_PORT = 18401  # the simulated SMS gateway of `clerk sim`


class RegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,31}$", description="Short stable name, e.g. bank-icbc")
    name: str = Field(min_length=1, max_length=100)
    kind: RegistryKind
    adapter: str = Field(description="Entry point in the query_clerk.connectors group, e.g. bank-json")
    base_url: str
    credential: SecretStr
    batch_size: int = Field(200, ge=1, le=5000, description="Subjects per query request")
    max_connections: int = Field(20, ge=1, le=500)
    requests_per_second: float = Field(50.0, ge=0, description="0 means no limit")
    timeout_s: float = Field(10.0, gt=0, le=300)
    verify_tls: bool = Field(
        True, description="Turning it off needs this explicit setting and logs a warning"
    )
    ca_file: Path | None = Field(None, description="CA bundle for registries with a private CA")
    push_feed: bool = Field(False, description="The bank pushes deposits (a long-polled feed) to watch")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def limits(self) -> ClientLimits:
        return ClientLimits(
            timeout_s=self.timeout_s,
            max_connections=self.max_connections,
            requests_per_second=self.requests_per_second,
        )


def registries_json(configs: list[RegistryConfig]) -> str:
    """The value of CLERK_REGISTRIES for these registries, credentials included: for handing settings to a
    child process (a runner, a worker, a benchmark's `clerk sim`), never for printing."""
    return json.dumps(
        [c.model_dump(mode="json") | {"credential": c.credential.get_secret_value()} for c in configs]
    )


def simulated_registries(host: str = "127.0.0.1") -> list[RegistryConfig]:
    """The embedded default: five registries served by `clerk sim` on loopback."""
    token = SecretStr(SIM_CREDENTIAL)
    rows = [
        ("bank-icbc", "工商银行(模拟)", RegistryKind.BANK, "bank-json", 18101),
        ("bank-ccb", "建设银行(模拟)", RegistryKind.BANK, "bank-json", 18102),
        ("bank-abc", "农业银行(模拟)", RegistryKind.BANK, "bank-json", 18103),
        ("realestate", "不动产登记中心(模拟)", RegistryKind.REAL_ESTATE, "real-estate-xml", 18201),
        ("vehicles", "车管所(模拟)", RegistryKind.VEHICLE, "vehicle-json", 18301),
    ]
    return [
        RegistryConfig(
            code=code,
            name=name,
            kind=kind,
            adapter=adapter,
            base_url=f"http://{host}:{port}",
            credential=token,
            push_feed=kind is RegistryKind.BANK,
        )
        for code, name, kind, adapter, port in rows
    ]


#: Two banks, a real-estate registry and a vehicle registry: the world tests and benchmarks simulate.
TEST_KINDS = (
    ("bank-a", RegistryKind.BANK, "bank-json"),
    ("bank-b", RegistryKind.BANK, "bank-json"),
    ("realestate", RegistryKind.REAL_ESTATE, "real-estate-xml"),
    ("vehicles", RegistryKind.VEHICLE, "vehicle-json"),
)


def placeholder_configs(credential: str = SIM_CREDENTIAL, **overrides: object) -> list[RegistryConfig]:
    """Settings for the four registries of `TEST_KINDS`, unlimited, before `world_in_background` gives
    them their ports."""
    return [
        RegistryConfig(
            code=code,
            name=code,
            kind=kind,
            adapter=adapter,
            base_url="http://127.0.0.1:9",
            credential=SecretStr(credential),
            **({"requests_per_second": 0} | overrides),
        )
        for code, kind, adapter in TEST_KINDS
    ]
