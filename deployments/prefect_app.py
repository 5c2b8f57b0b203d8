"""The Prefect server the clerk starts (`clerk serve`, `clerk up`): Prefect's own app, as `prefect server
start` runs it (`create_app` under uvicorn), behind one middleware, `RetryBusy`.

Prefect's server answers 503 when its database refuses a transaction for the moment (on SQLite, "database
is locked": most of its write transactions begin deferred, and SQLite refuses a deferred reader's upgrade
to writer at once when another connection wrote meanwhile; PrefectHQ/prefect#18934). Prefect's client then
waits 2 s before asking again (`2 ** attempt`, not configurable), and a judge's case query that meets one
takes 4 s instead of 2 (bench/README.md, "The 2-second tail"). `RetryBusy` tries such a request again in
the server after 50, 100, 200 and 400 ms; only when all of those are refused too does the client get the
503, and then it waits and asks again as before. Retrying is safe: the refused request's transaction was
rolled back, and the client would send the same request again anyway.

    python -m deployments.prefect_app --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Waits before each retry of a request the database refused (0.75 s in all, then the client's own 2 s).
BUSY_DELAYS_S = (0.05, 0.1, 0.2, 0.4)

logger = logging.getLogger("clerk.prefect_app")  # to the server's output (server.log), whatever Prefect's
# logging settings say: how often the database was busy is worth seeing


class RetryBusy:
    """ASGI middleware: an HTTP request answered 503 is run again after each of `delays` before the 503 is
    let through, one request at a time: while one is being tried again, the others' 503s pass straight
    through (with many writers, tries again only add to what SQLite refuses: bench/README.md, "Trying a busy
    request again in the server"). The request's body is read first (Prefect's API takes small JSON bodies)
    and replayed to each try; a 503's start and body are held back, and the exception Starlette raises after
    sending it is swallowed, until the last try. Websockets and lifespan pass straight through."""

    def __init__(self, app: ASGIApp, delays: Sequence[float] = BUSY_DELAYS_S) -> None:
        self.app = app
        self.delays = tuple(delays)
        self.retried = 0  # tries again, in all (for the log and the tests)
        self.retrying = False  # a request is being tried again (one event loop: no lock needed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        claimed = False

        def claim() -> bool:  # a first 503 is held back only while no other request is being tried again
            nonlocal claimed
            claimed = bool(self.delays) and not self.retrying
            self.retrying |= claimed
            return claimed

        try:
            if not await self._try(scope, body, receive, send, hold=claim):
                return
            for attempt, delay in enumerate(self.delays, 1):
                self.retried += 1
                logger.info(
                    "%s %s: busy (503), trying again in %.2f s (%d)",
                    scope["method"],
                    scope["path"],
                    delay,
                    attempt,
                )
                await asyncio.sleep(delay)
                more = attempt < len(self.delays)  # the last try's 503 goes to the client
                if not await self._try(scope, body, receive, send, hold=_always(more)):
                    return
        finally:
            if claimed:  # however this request ended (answered, refused at last, its client gone)
                self.retrying = False

    async def _try(
        self, scope: Scope, body: bytes, receive: Receive, send: Send, *, hold: Callable[[], bool]
    ) -> bool:
        """Run the request once; True when it was answered 503 and `hold()` said to hold that answer back."""
        replayed = False
        refused = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the client's disconnect, if it goes away

        async def forward(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 503 and hold():
                refused = True
            if not refused:
                await send(message)

        try:
            # A copy for each try: Starlette's routing writes into the scope (a mount moves its prefix into
            # root_path), and a second try through a written scope would route `/api/...` as `/...` (404).
            await self.app(dict(scope), replay, forward)
        except Exception:
            if not refused:  # Starlette raises the handled error again after sending its response
                raise
        return refused


def _always(answer: bool) -> Callable[[], bool]:
    return lambda: answer


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.prefect_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4200, help="port to listen on (default 4200)")
    args = parser.parse_args(argv)
    with socket.socket() as probe:  # the same words as `prefect server start`, before Prefect loads
        try:
            probe.bind((args.host, args.port))
        except OSError:
            print(f"Port {args.port} is already in use.", file=sys.stderr, flush=True)
            return 1

    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_SERVER_API_KEEPALIVE_TIMEOUT,
        PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL,
        PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT,
        PREFECT_SERVER_LOGGING_LEVEL,
    )

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    uvicorn.run(
        RetryBusy(create_app(final=True)),
        host=args.host,
        port=args.port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        ws_ping_interval=PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.value(),
        ws_ping_timeout=PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.value(),
        log_level=PREFECT_SERVER_LOGGING_LEVEL.value().lower(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
