"""`RetryBusy` (deployments/prefect_app.py): a request the Prefect server answers 503 (its database busy) is
run again in the server, body and all, before the 503 reaches the client; anything else passes untouched.
The app here is shaped and answers the way Prefect's does: its API mounted under /api, FastAPI's handler
for `Exception` sending the 503, then Starlette raising the error again."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from deployments.prefect_app import RetryBusy


class Busy(Exception):
    pass


def prefect_like(refusals: int, status: int = 503) -> tuple[FastAPI, list[bytes]]:
    """An app whose POST /api/runs is refused `refusals` times, then answers with the body it was sent. The
    API is mounted under /api, as Prefect's `create_app` mounts its own: a mount writes into the scope."""
    seen: list[bytes] = []

    async def busy(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse({"exception_message": "Service Unavailable"}, status_code=status)

    api = FastAPI(exception_handlers={Exception: busy})

    @api.post("/runs")
    async def runs(request: Request) -> dict[str, str]:
        seen.append(await request.body())
        if len(seen) <= refusals:
            raise Busy("database is locked")
        return {"created": (await request.body()).decode()}

    app = FastAPI()
    app.mount("/api", api)
    return app, seen


async def post(app: RetryBusy) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://prefect") as client:
        return await client.post("/api/runs", content=b'{"deployment": "case-query"}')


def test_a_request_refused_as_busy_is_run_again_with_its_body_and_answered() -> None:
    app, seen = prefect_like(refusals=2)
    wrapped = RetryBusy(app, delays=(0.0, 0.0, 0.0))
    response = asyncio.run(post(wrapped))
    assert response.status_code == 200
    assert response.json() == {"created": '{"deployment": "case-query"}'}
    assert seen == [b'{"deployment": "case-query"}'] * 3
    assert wrapped.retried == 2


def test_refused_every_time_the_client_gets_the_503_after_the_last_try() -> None:
    app, seen = prefect_like(refusals=100)
    wrapped = RetryBusy(app, delays=(0.0, 0.0))
    response = asyncio.run(post(wrapped))
    assert response.status_code == 503
    assert response.json() == {"exception_message": "Service Unavailable"}
    assert len(seen) == 3  # the first try and two more
    assert wrapped.retried == 2


@pytest.mark.parametrize("status", [500, 409])
def test_other_errors_are_not_tried_again(status: int) -> None:
    app, seen = prefect_like(refusals=1, status=status)
    wrapped = RetryBusy(app, delays=(0.0, 0.0))
    response = asyncio.run(post(wrapped))
    assert response.status_code == status
    assert len(seen) == 1
    assert wrapped.retried == 0


def test_while_one_request_is_tried_again_the_others_503s_pass_straight_through() -> None:
    app, seen = prefect_like(refusals=2)
    wrapped = RetryBusy(app, delays=(0.2,))

    async def both() -> list[int]:
        first = asyncio.ensure_future(post(wrapped))
        await asyncio.sleep(0.05)  # the first is refused and waiting to try again
        second = await post(wrapped)
        return [(await first).status_code, second.status_code]

    assert asyncio.run(both()) == [200, 503]
    assert len(seen) == 3  # the first, the second, the first again
    assert wrapped.retried == 1
