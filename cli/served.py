"""A judge's case query on a Prefect server that already runs (`clerk serve`, or the one PREFECT_API_URL
names), through its REST API with httpx alone: no Prefect import, no temporary server, so `clerk query`
answers in the time the served run takes (bench/latency.py measures both routes).

Light on purpose: `clerk query` imports this and `cli.query`, not the rest of the command line.
"""

from __future__ import annotations

import base64
import os
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from models.status import REFUSED

#: The deployment a judge's query starts (deployments/catalog.py).
CASE_QUERY = "case-query/case-query"
DEDUCTION = "deduction/deduction"
#: Where `clerk serve` starts its Prefect server unless told otherwise (CLERK_PREFECT_PORT).
DEFAULT_PORT = 4200
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
#: The answers that say "busy, ask again" (Prefect's client retries the same), and how often to ask.
BUSY = frozenset({429, 502, 503})
TRIES = 6


class ServerError(Exception):
    """The Prefect server refused or failed a request; the message says which and why, `status` the HTTP
    status it answered (None when it did not answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunRefused(Exception):
    """The run refused what it was asked (it ended Refused); the message says why: an input error."""


@dataclass(frozen=True, slots=True)
class Finished:
    flow_run_id: str
    state: str  # COMPLETED, FAILED, …
    name: str
    message: str

    @property
    def completed(self) -> bool:
        """It ended well (refused input is not that)."""
        return self.state == "COMPLETED" and not self.refused

    @property
    def refused(self) -> bool:
        """It refused what it was asked (the message says why): an input error, no failure."""
        return self.state == "COMPLETED" and self.name == REFUSED


def headers() -> dict[str, str]:
    """The credentials Prefect's own client would send (PREFECT_API_KEY, PREFECT_API_AUTH_STRING)."""
    if key := os.environ.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {key}"}
    if auth := os.environ.get("PREFECT_API_AUTH_STRING"):
        return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    return {}


def server_url() -> str:
    """The Prefect server to look for: PREFECT_API_URL's, or `clerk serve`'s on this machine (127.0.0.1,
    CLERK_PREFECT_PORT or 4200)."""
    named = os.environ.get("PREFECT_API_URL")
    port = os.environ.get("CLERK_PREFECT_PORT") or DEFAULT_PORT
    return (named or f"http://127.0.0.1:{port}/api").rstrip("/")


def _backoff(answer: httpx.Response, attempt: int) -> float:
    """Seconds before asking again: the server's Retry-After (seconds) if it gives one, else 0.25 s doubling
    (0.25, 0.5, 1, 2, 4), each with up to a fifth more at random so that clients do not ask in step."""
    try:
        told = float(answer.headers.get("retry-after", ""))
    except ValueError:
        told = 0.0
    wait = told if 0 < told <= 30 else 0.25 * 2**attempt
    return wait * (1 + random.random() / 5)  # noqa: S311 - jitter, not a secret


class Api:
    """The few calls a judge's query needs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answered = False  # whether the server answered at all (`served`)
        self.client = httpx.Client(base_url=url, headers=headers(), timeout=30)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, asked again (up to `TRIES` times, with backoff or the server's Retry-After) while the
        server answers it is busy (429, 502, 503: a Prefect server on a busy SQLite answers 503 and applies
        nothing), as Prefect's own client does; the JSON answer, or ServerError."""
        for attempt in range(TRIES):
            answer = self._request(method, path, **kwargs)
            if answer.status_code not in BUSY or attempt == TRIES - 1:
                break
            time.sleep(_backoff(answer, attempt))
        if answer.status_code >= 400:
            detail = answer.text[:300]
            raise ServerError(
                f"the Prefect server refused {method} {path}: {answer.status_code} {detail}",
                answer.status_code,
            )
        return answer.json() if answer.content else None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.ConnectError):
                raise ServerError(
                    f"no Prefect server answers at {self.url}: start `clerk serve` (or name a server in "
                    "PREFECT_API_URL)"
                ) from None
            raise ServerError(f"the Prefect server at {self.url} failed: {type(exc).__name__}") from None

    def served(self, name: str) -> str | None:
        """The id of the deployment `name` when something serves it (`clerk serve`, a worker: the server
        marks it READY while they ask for its runs); None when no server answers, it has no such
        deployment, or nothing serves it. One request: the common case, a server that runs, costs no more."""
        try:
            answer = self.client.get(f"/deployments/name/{name}", timeout=2)
        except httpx.HTTPError:
            if os.environ.get("PREFECT_API_URL"):
                raise ServerError(
                    f"PREFECT_API_URL: the Prefect server at {self.url} does not answer"
                ) from None
            return None
        self.answered = True
        if answer.status_code != 200:
            return None
        found = answer.json()
        return str(found["id"]) if str(found.get("status", "")).upper() == "READY" else None

    def start(self, deployment_id: str, parameters: dict[str, Any]) -> str:
        body = {"parameters": parameters, "idempotency_key": uuid.uuid4().hex}
        return str(self._call("POST", f"/deployments/{deployment_id}/create_flow_run", json=body)["id"])

    def wait(
        self, flow_run_id: str, timeout_s: float, poll_s: float = 0.1, until: frozenset[str] = FINAL
    ) -> Finished | None:
        """The run's final state (or the first of the state types `until`), or None when it has not reached
        one within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self._call("GET", f"/flow_runs/{flow_run_id}").get("state") or {}
            if state.get("type") in until:
                return Finished(flow_run_id, state["type"], state.get("name", ""), state.get("message") or "")
            if time.monotonic() > deadline:
                return None
            time.sleep(poll_s)

    def follow(
        self, flow_run_id: str, timeout_s: float, late: str, until: frozenset[str] = FINAL
    ) -> Finished:
        """The run's state once it reached one of `until` (by default, its end): ServerError saying `late`
        when it has not within `timeout_s` (it goes on), RunRefused when it refused what it was asked."""
        reached = self.wait(flow_run_id, timeout_s, until=until)
        if reached is None:
            raise ServerError(f"{late} within {timeout_s:g} s; it goes on: see the link above")
        if reached.refused:
            raise RunRefused(reached.message)
        return reached

    def artifact(self, flow_run_id: str, key: str) -> Any:
        """The data of the run's artifact `key` (its latest), or None."""
        found = self.latest_artifact(flow_run_id, key)
        return found.get("data") if found else None

    def latest_artifact(self, flow_run_id: str, key: str) -> dict[str, Any] | None:
        """The run's latest artifact `key` (data, description, …), or None."""
        body = {
            "artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}},
            "sort": "CREATED_DESC",
            "limit": 1,
        }
        found = self._call("POST", "/artifacts/filter", json=body)
        return dict(found[0]) if found else None

    def _found(self, path: str) -> Any:
        """GET `path`, or None when the server has nothing there (404)."""
        try:
            return self._call("GET", path)
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise

    def flow_run(self, flow_run_id: str) -> dict[str, Any] | None:
        """The run as the server has it (state, parameters, …), or None when it has no such run."""
        found = self._found(f"/flow_runs/{flow_run_id}")
        return None if found is None else dict(found)

    def run_input(self, flow_run_id: str, key: str) -> Any:
        """A paused run's input `key` (its form's schema, …), or None when it has none."""
        return self._found(f"/flow_runs/{flow_run_id}/input/{key}")

    def resume(self, flow_run_id: str, run_input: dict[str, Any]) -> str | None:
        """Resume a paused run with `run_input`; None when taken, else the server's reason (not paused, the
        form's schema refused the input)."""
        result = self._call("POST", f"/flow_runs/{flow_run_id}/resume", json={"run_input": run_input})
        if result.get("status") == "ACCEPT":
            return None
        return str((result.get("details") or {}).get("reason") or result.get("status"))

    def ui_link(self, flow_run_id: str) -> str:
        return f"{self.url.removesuffix('/api')}/runs/flow-run/{flow_run_id}"
