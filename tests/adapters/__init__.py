"""Adapter tests. Those that mock HTTP with respx build their clients with `mocked`: respx intercepts
httpx's own connection pool, not the aiohttp transport a `RegistryClient` uses by default."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from connectors.http import ClientLimits, RegistryClient


def mocked(code: str, base_url: str, token: str, limits: ClientLimits, **kwargs: Any) -> RegistryClient:
    """A client over httpx's own transport, which respx mocks."""
    return RegistryClient(
        code, base_url, SecretStr(token), limits, transport=httpx.AsyncHTTPTransport(), **kwargs
    )
