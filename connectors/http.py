"""The HTTP layer every adapter shares: one `httpx.AsyncClient` per registry, with limits, bounded bodies,
retries in one place, a circuit breaker, and the rule that a control request is never sent twice blindly.

The client moves its requests over aiohttp (`httpx_aiohttp.AiohttpTransport`): adapters, tests and respx
keep httpx's API, and a request costs a third of the CPU it costs through httpx's own pool (`python -m bench
transport`). A client given its own `transport` (respx, `httpx.MockTransport`) uses that instead.
Requests go to the transport directly, not through an `httpx.AsyncClient`: the client's URL merging,
cookie jar, auth and redirect machinery (none of which a registry call uses: redirects are refused below)
cost more than a quarter of a request's CPU (bench/README.md, item 12, has the figures).

Retries (tenacity, exponential backoff with jitter, honouring Retry-After) apply to:
- every *safe* request (queries, status, health): any `TransientError`;
- a *control* request (freeze, seize, renew, release, deduct) only when it surely never reached the
  registry: a connection that could not be opened, or a 429. A timeout or a 5xx after the request went out
  leaves its outcome unknown: `UnknownOutcome` is raised and the adapter asks `status(idempotency_key)`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring
from httpx_aiohttp import AiohttpTransport
from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay

from connectors.base import (
    Health,
    InvalidReply,
    RegistryError,
    RegistryUnavailable,
    RejectedError,
    TransientError,
    UnknownOutcome,
    reason_code,
)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    timeout_s: float = 10.0
    max_connections: int = 20
    requests_per_second: float = 50.0
    max_attempts: int = 4
    max_retry_delay_s: float = 30.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    max_body_bytes: int = 8 * 1024 * 1024
    #: One attempt, from sending to the last byte of the reply: `timeout_s` bounds each read, so a reply
    #: that drips a byte at a time would otherwise hold the call open for as long as the registry likes.
    whole_reply_factor: float = 3.0


class NotSent(TransientError):
    """The request surely never reached the registry (no connection, or 429): safe to send again."""


#: Transport failures that mean the request never left: no connection could be opened (or none came free).
#: Anything else (a connection dropped, reset or timed out once the request went out) leaves the outcome
#: unknown. httpx_aiohttp maps aiohttp's errors onto httpx's loosely (a server that hangs up after reading
#: the request becomes `httpx.ConnectTimeout`), so the aiohttp error it chains is what is judged.
NEVER_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)


#: Awaited with the registry's code before every request goes out (each attempt): where a deployment shares a
#: registry's rate among many processes (a Prefect global rate limit, flows/limits.py). The local limits above
#: still apply.
Gate = Callable[[str], Awaitable[None]]


class CircuitBreaker:
    """Opens after `threshold` failures in a row; after `cooldown` it lets one request through to test."""

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.failures = 0
        self.opened_at: float | None = None

    def check(self, registry: str) -> None:
        if self.opened_at is None:
            return
        waited = time.monotonic() - self.opened_at
        if waited < self.cooldown_s:
            raise RegistryUnavailable(
                registry, f"skipped for {self.cooldown_s - waited:.0f} s more after repeated failures"
            )
        self.opened_at = time.monotonic()  # half-open: this request is the test; others keep waiting

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None


class RateLimiter:
    """At most `rate` request starts per second, spread evenly (a leaky bucket of one)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


@functools.cache
def verifying_context() -> ssl.SSLContext:
    """The TLS context that verifies registries against the public CAs, as httpx builds it (certifi's bundle,
    or SSL_CERT_FILE / SSL_CERT_DIR): made once a process and shared by every client. Loading the bundle
    takes ~60 ms of CPU, and a run opens seven clients (the registries, the SMS gateway, the court's bank):
    0.4 s of every flow run's start went to it (bench/README.md, issue 43)."""
    return httpx.create_ssl_context()


class RegistryClient:
    """HTTP to one registry. Adapters build requests and parse replies; this class moves them."""

    def __init__(
        self,
        code: str,
        base_url: str,
        credential: SecretStr,
        limits: ClientLimits | None = None,
        verify: bool | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.code = code
        self._gate = gate
        self.limits = limits or ClientLimits()
        self._credential = credential
        self._breaker = CircuitBreaker(self.limits.breaker_failures, self.limits.breaker_cooldown_s)
        self._rate = RateLimiter(self.limits.requests_per_second)
        self._slots = asyncio.Semaphore(self.limits.max_connections)
        pool = httpx.Limits(
            max_connections=self.limits.max_connections,
            max_keepalive_connections=self.limits.max_connections,
        )
        context = verifying_context() if verify is True else verify
        self._transport = transport or AiohttpTransport(verify=context, limits=pool)
        self._base_url = base_url.rstrip("/")
        timeout = self.limits.timeout_s
        self._timeout = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}

    @property
    def breaker_open(self) -> bool:
        return self._breaker.is_open

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        reference: str,
        safe: bool,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries as the module docstring says; returns a 2xx response with its body read."""

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, RegistryUnavailable):
                return False
            return isinstance(exc, NotSent) or (safe and isinstance(exc, TransientError))

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.limits.max_attempts)
            | stop_after_delay(self.limits.max_retry_delay_s),
            wait=self._wait,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(method, path, reference, json_body, content, headers)
        except TransientError as exc:
            if not safe and not isinstance(exc, NotSent | RegistryUnavailable):
                raise UnknownOutcome(self.code, f"reply lost ({exc.reason})", reference) from None
            raise
        raise AssertionError("tenacity returns or raises")  # pragma: no cover

    async def health(self, path: str) -> Health:
        """The registry's answer to `GET path`, its health check: up (with the time it took) or down (why)."""
        started = time.perf_counter()
        try:
            await self.call("GET", path, reference="health", safe=True)
        except RegistryError as exc:
            return Health(registry=self.code, ok=False, latency_ms=_ms(started), detail=exc.reason)
        return Health(registry=self.code, ok=True, latency_ms=_ms(started))

    def _wait(self, retry_state: Any) -> float:
        """Exponential backoff with full jitter, or the registry's Retry-After when it is longer."""
        attempt = retry_state.attempt_number
        ceiling = min(self.limits.backoff_max_s, self.limits.backoff_initial_s * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after:
            delay = max(delay, min(exc.retry_after, self.limits.max_retry_delay_s))
        return delay

    async def _once(
        self,
        method: str,
        path: str,
        reference: str,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        self._breaker.check(self.code)
        await self._rate.acquire()
        if self._gate is not None:
            await self._gate(self.code)
        request_headers = {
            "Authorization": f"Bearer {self._credential.get_secret_value()}",
            "X-Request-Ref": reference,
            **(headers or {}),
        }
        deadline = self.limits.timeout_s * self.limits.whole_reply_factor
        try:
            async with self._slots, asyncio.timeout(deadline):
                request = httpx.Request(
                    method,
                    self._base_url + path,
                    json=json_body,
                    content=content,
                    headers=request_headers,
                    extensions={"timeout": self._timeout},
                )
                response = await self._transport.handle_async_request(request)
                try:
                    body = await self._read_bounded(response, reference)
                finally:
                    await response.aclose()
        except TimeoutError:
            self._breaker.failure()
            raise TransientError(self.code, f"reply not complete within {deadline:g} s", reference) from None
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            self._breaker.failure()
            raise self._fault(exc, reference) from None
        response._content = body
        return self._classify(response, reference)

    def _fault(self, exc: Exception, reference: str) -> TransientError:
        """A transport failure as `NotSent` (the request never left: safe to send again) or as a
        `TransientError` whose outcome is unknown."""
        cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
        name = type(cause).__name__
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return NotSent(
                self.code, "the registry's TLS certificate is not trusted (set its ca_file)", reference
            )
        if isinstance(cause, NEVER_SENT):
            return NotSent(self.code, f"cannot connect ({name})", reference)
        if isinstance(cause, httpx.TimeoutException | TimeoutError):
            return TransientError(self.code, f"timed out ({name})", reference)
        return TransientError(self.code, f"connection failed ({name})", reference)

    async def _read_bounded(self, response: httpx.Response, reference: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            raise InvalidReply(
                self.code, f"reply of {int(declared):,} bytes is over the size limit", reference
            )
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():  # decoded: the bound also stops compression bombs
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise InvalidReply(self.code, "reply is over the size limit", reference)
            chunks.append(chunk)
        return b"".join(chunks)

    def _classify(self, response: httpx.Response, reference: str) -> httpx.Response:
        status = response.status_code
        if status == 429:
            self._breaker.failure()
            raise NotSent(self.code, "rate limited (429)", reference, _retry_after(response))
        if status >= 500:
            self._breaker.failure()
            raise TransientError(self.code, f"registry error ({status})", reference, _retry_after(response))
        self._breaker.success()
        if 300 <= status < 400:
            raise RejectedError(self.code, f"unexpected redirect ({status})", reference)
        if status >= 400:
            raise RejectedError(self.code, f"refused ({status}): {_short_reason(response)}", reference)
        return response


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _short_reason(response: httpx.Response) -> str:
    """The registry's error code from a JSON `{"error": …}` or XML `<Error code="…"/>` body; never its free
    text (it may echo personal data)."""
    code: object = None
    if "xml" in response.headers.get("content-type", ""):
        try:
            root = defused_fromstring(
                response.content, forbid_dtd=True, forbid_entities=True, forbid_external=True
            )
            code = root.get("code")
        except (DefusedXmlException, ET.ParseError):
            pass
    else:
        try:
            data = response.json()
            code = data.get("error") if isinstance(data, dict) else None
        except (ValueError, UnicodeDecodeError):
            pass
    return reason_code(code) if isinstance(code, str) and code else "no reason given"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def safe_xml(content: bytes) -> ET.Element:
    """Parse XML with no DTD, no entity declarations and no external entities (defusedxml); the size was
    bounded when the body was read. Raises `DefusedXmlException` or `ET.ParseError`."""
    root: ET.Element = defused_fromstring(
        content, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    return root


def parse_xml(response: httpx.Response, registry: str, reference: str, root_tag: str) -> ET.Element:
    """The reply's root element, or `InvalidReply` for anything unsafe, malformed or unexpected."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith(("application/xml", "text/xml")):
        raise InvalidReply(registry, f"expected XML, got {content_type or 'no content type'!r}", reference)
    try:
        root = safe_xml(response.content)
    except DefusedXmlException:
        raise InvalidReply(registry, "reply uses DTDs or entities, which are refused", reference) from None
    except ET.ParseError:
        raise InvalidReply(registry, "reply is not well-formed XML", reference) from None
    if root.tag != root_tag:  # the registry's tag is not quoted back: it is the registry's text
        raise InvalidReply(registry, f"expected <{root_tag}> as the root element", reference)
    return root


def parse_json(response: httpx.Response, model: type[M], registry: str, reference: str) -> M:
    """Validate a JSON reply into `model`; the error says what was wrong, never what the value was."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("application/json"):
        raise InvalidReply(registry, f"expected JSON, got {content_type or 'no content type'!r}", reference)
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise InvalidReply(registry, "reply is not valid JSON", reference) from None
    return validate(data, model, registry, reference)


def validate(data: Any, model: type[M], registry: str, reference: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidReply(registry, "invalid reply: " + describe(exc), reference) from None


def describe(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)[:3]
    ]
    return "; ".join(parts)


__all__ = ["ClientLimits", "NotSent", "RegistryClient", "RegistryError", "parse_json", "validate"]
