"""Adapters load through entry points, only from the allow-list; a bad one stops the start, named."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr

from clerk.settings import SettingsError, load_settings
from connectors import loader
from connectors.bank import BankConnector
from connectors.base import RegistryKind
from connectors.config import RegistryConfig

SHIPPED = ["bank-json", "real-estate-xml", "vehicle-json"]


def install_package(site: Path, name: str, module_source: str, entry: str) -> None:
    """Put a minimal installed distribution on `site`: a module and its dist-info with one entry point."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source), encoding="utf-8")
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[query_clerk.connectors]\n{entry}\n", encoding="utf-8")


def config(adapter: str, kind: RegistryKind = RegistryKind.BANK, **extra: object) -> RegistryConfig:
    return RegistryConfig(
        code="bank-x",
        name="X",
        kind=kind,
        adapter=adapter,
        base_url="http://127.0.0.1:9",
        credential=SecretStr("t"),
        **extra,
    )  # type: ignore[arg-type]


def test_the_shipped_adapters_are_entry_points() -> None:
    assert set(SHIPPED) <= set(loader.available())
    assert loader.load_adapter("bank-json", SHIPPED) is BankConnector


def test_an_adapter_shipped_as_its_own_package_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_package(
        tmp_path,
        "acme_bank_connector",
        """
        from connectors.bank import BankConnector

        class AcmeBankConnector(BankConnector):
            health_path = "/acme/health"
        """,
        "acme-bank = acme_bank_connector:AcmeBankConnector",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    adapter = loader.load_adapter("acme-bank", [*SHIPPED, "acme-bank"])
    assert adapter.__name__ == "AcmeBankConnector" and adapter.health_path == "/acme/health"
    built = loader.build([config("acme-bank")], [*SHIPPED, "acme-bank"])
    assert type(built["bank-x"]).__name__ == "AcmeBankConnector"


def test_an_adapter_not_allowed_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_package(tmp_path, "rogue_connector", "class Rogue: pass\n", "rogue = rogue_connector:Rogue")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(loader.ConnectorLoadError, match=r"connector 'rogue': not on the allow-list"):
        loader.build([config("rogue")], SHIPPED)
    with pytest.raises(loader.ConnectorLoadError, match=r"connector 'rogue': is not a connector class"):
        loader.load_adapter("rogue", ["rogue"])


def test_an_adapter_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_package(tmp_path, "broken_connector", "import does_not_exist\n", "broken = broken_connector:X")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(loader.ConnectorLoadError) as caught:
        loader.load_adapter("broken", ["broken"])
    assert (
        str(caught.value)
        == "connector 'broken': failed to load: ModuleNotFoundError: No module named 'does_not_exist'"
    )
    with pytest.raises(loader.ConnectorLoadError, match="no such entry point"):
        loader.load_adapter("missing", ["missing"])


def test_an_adapter_for_another_kind_of_registry_is_refused() -> None:
    with pytest.raises(
        loader.ConnectorLoadError, match="speaks to vehicle registries, but bank-x is a bank registry"
    ):
        loader.build([config("vehicle-json")], SHIPPED)


def test_tls_off_needs_the_setting_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        loader.build([config("bank-json", verify_tls=False)], SHIPPED)
    assert "TLS verification is OFF for registry bank-x" in caplog.text


def test_registries_from_settings_and_their_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [r.code for r in load_settings().registries] == [
        "bank-icbc",
        "bank-ccb",
        "bank-abc",
        "realestate",
        "vehicles",
    ]
    monkeypatch.setenv(
        "CLERK_REGISTRIES",
        '[{"code": "B", "name": "x", "kind": "bank", "adapter": "bank-json", '
        '"base_url": "ftp://x", "credential": "secret-cred"}]',
    )
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "CLERK_REGISTRIES_0_CODE: String should match pattern" in message
    assert "CLERK_REGISTRIES_0_BASE_URL: must start with http:// or https://" in message
    assert "secret-cred" not in message
