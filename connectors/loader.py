"""Adapters are found through the entry-point group `query_clerk.connectors`, like pytest plugins: a bank
can ship its adapter as a package of its own. Settings name the adapters allowed; one that is not allowed,
missing, or fails to import stops the start, with its name and the reason.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from connectors.adapter import HttpConnector
from connectors.config import RegistryConfig
from connectors.http import Gate, RegistryClient

GROUP = "query_clerk.connectors"
log = logging.getLogger(__name__)


class ConnectorLoadError(Exception):
    def __init__(self, adapter: str, reason: str) -> None:
        super().__init__(adapter, reason)
        self.adapter, self.reason = adapter, reason

    def __str__(self) -> str:
        return f"connector {self.adapter!r}: {self.reason}"


def available() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_adapter(
    name: str, allowed: Iterable[str], found: dict[str, EntryPoint] | None = None
) -> type[HttpConnector]:
    """The adapter class an entry point names, if the allow-list has it; `found`: the entry points, when the
    caller has read them already (reading them scans every installed package: ~20 ms)."""
    allowed = set(allowed)
    if name not in allowed:
        raise ConnectorLoadError(name, f"not on the allow-list ({', '.join(sorted(allowed)) or 'empty'})")
    found = available() if found is None else found
    if name not in found:
        raise ConnectorLoadError(
            name, f"no such entry point in {GROUP} (installed: {', '.join(sorted(found))})"
        )
    try:
        adapter = found[name].load()
    except Exception as exc:  # any import failure of third-party code stops the start, named
        raise ConnectorLoadError(name, f"failed to load: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(adapter, type) and issubclass(adapter, HttpConnector)):
        raise ConnectorLoadError(
            name, "is not a connector class (it must subclass connectors.adapter.HttpConnector)"
        )
    return adapter


def build(
    configs: Iterable[RegistryConfig], allowed: Iterable[str], gate: Gate | None = None
) -> dict[str, HttpConnector]:
    """Load every adapter first (so that a bad one stops the start before any client opens), then connect;
    `gate`, when given, is awaited before every request (a limit shared with other processes)."""
    configs = list(configs)
    allowed = list(allowed)
    found = available()
    adapters = {c.code: load_adapter(c.adapter, allowed, found) for c in configs}
    for config in configs:
        if adapters[config.code].kind != config.kind:
            raise ConnectorLoadError(
                config.adapter,
                f"speaks to {adapters[config.code].kind.value} registries, "
                f"but {config.code} is a {config.kind.value} registry",
            )
    connectors: dict[str, HttpConnector] = {}
    for config in configs:
        verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=str(config.ca_file)) if config.ca_file else config.verify_tls
        )
        if not config.verify_tls:
            log.warning("TLS verification is OFF for registry %s: only for a test network", config.code)
        client = RegistryClient(
            config.code, config.base_url, config.credential, config.limits(), verify=verify, gate=gate
        )
        connectors[config.code] = adapters[config.code](client)
    return connectors
