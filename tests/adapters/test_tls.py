"""TLS to registries: verification is on by default; a private CA is trusted through `ca_file`; turning
verification off takes an explicit setting and logs a warning. The simulator serves HTTPS with a test CA."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.base import RegistryKind
from connectors.config import RegistryConfig
from connectors.loader import build
from connectors.simulator.bank import BankSimulator
from connectors.simulator.serve import serving_in_background
from tests.tlsca import make_ca

ALLOWED = ["bank-json"]


def config(url: str, **tls: object) -> RegistryConfig:
    return RegistryConfig(
        code="bank-tls",
        name="bank over TLS",
        kind=RegistryKind.BANK,
        adapter="bank-json",
        base_url=url,
        credential=SecretStr("sim-token"),
        max_connections=2,
        **tls,  # type: ignore[arg-type]
    )


async def health(cfg: RegistryConfig) -> tuple[bool, str]:
    (connector,) = build([cfg], ALLOWED).values()
    try:
        found = await connector.health()
    finally:
        await connector.aclose()
    return found.ok, found.detail


async def test_https_with_a_private_ca(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ca = make_ca(tmp_path / "ca")
    bank = BankSimulator("bank-tls", "sim-token")
    with serving_in_background(bank.app, tls=(ca.cert_file, ca.key_file)) as url:
        assert url.startswith("https://127.0.0.1:")
        # Verification is on by default: a certificate from a CA nobody named is refused, with the reason.
        assert await health(config(url)) == (
            False,
            "the registry's TLS certificate is not trusted (set its ca_file)",
        )
        assert await health(config(url, ca_file=ca.ca_file)) == (True, "")
        with caplog.at_level(logging.WARNING):
            assert await health(config(url, verify_tls=False)) == (True, "")
        assert "TLS verification is OFF for registry bank-tls: only for a test network" in caplog.text
