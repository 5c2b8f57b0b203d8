"""What a broken connection means, over the real transport (aiohttp under httpx) and real loopback sockets:
a request that surely never left may be sent again; one that may have reached the registry may not, blindly.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr

from connectors.base import TransientError, UnknownOutcome
from connectors.http import ClientLimits, NotSent, RegistryClient

LIMITS = ClientLimits(
    max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.002, requests_per_second=0, timeout_s=2
)
Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(reply: Reply) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback server that reads each request's head, keeps it, then answers with `reply`."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            await reply(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield f"http://127.0.0.1:{port}", heads


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request, then close without a word: the registry may have acted on it."""


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HELLO THERE\r\n\r\n")
    await writer.drain()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_control_request_whose_connection_drops_is_not_sent_again_blindly() -> None:
    async with server(hang_up) as (url, heads):
        client = RegistryClient("bank-a", url, SecretStr("t"), LIMITS)
        with pytest.raises(
            UnknownOutcome, match=r"reply lost \(connection failed \(ServerDisconnectedError\)\)"
        ):
            await client.call(
                "POST", "/v1/freezes", reference="key-1", safe=False, json_body={"key": "key-1"}
            )
        await client.aclose()
    assert len(heads) == 1, "sent once; the adapter asks the key's status before anything else"


async def test_a_query_whose_connection_drops_is_asked_again_up_to_the_limit() -> None:
    async with server(hang_up) as (url, heads):
        client = RegistryClient("bank-a", url, SecretStr("t"), LIMITS)
        with pytest.raises(TransientError, match=r"connection failed \(ServerDisconnectedError\)") as caught:
            await client.call("POST", "/v1/queries", reference="q-1", safe=True, json_body={})
        await client.aclose()
    assert not isinstance(caught.value, NotSent | UnknownOutcome)
    assert len(heads) == LIMITS.max_attempts


async def test_a_reply_that_is_not_http_is_a_transient_fault_not_a_crash() -> None:
    async with server(not_http) as (url, heads):
        client = RegistryClient("bank-a", url, SecretStr("t"), LIMITS)
        with pytest.raises(UnknownOutcome, match="reply lost"):
            await client.call("POST", "/v1/freezes", reference="key-1", safe=False, json_body={})
        with pytest.raises(TransientError, match="connection failed"):
            await client.call("GET", "/v1/health", reference="health", safe=True)
        await client.aclose()
    assert len(heads) == 1 + LIMITS.max_attempts


async def test_a_registry_that_cannot_be_reached_never_got_the_request_so_it_is_sent_again() -> None:
    client = RegistryClient("bank-a", f"http://127.0.0.1:{closed_port()}", SecretStr("t"), LIMITS)
    attempts = 0
    real_once = client._once

    async def counted(*args: object) -> object:
        nonlocal attempts
        attempts += 1
        return await real_once(*args)  # type: ignore[arg-type]

    client._once = counted  # type: ignore[method-assign]
    with pytest.raises(NotSent, match=r"cannot connect \(ClientConnectorError\)"):
        await client.call("POST", "/v1/freezes", reference="key-1", safe=False, json_body={})
    await client.aclose()
    assert attempts == LIMITS.max_attempts
