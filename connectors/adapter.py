"""What the HTTP adapters share: health, status by key, and the rule for control requests.

A control request (freeze, seizure, renewal, release) is sent once. If its reply is lost or unreadable,
the registry may still have applied it: the status of its idempotency key says what happened. Only a key
the registry never saw is sent again, with the same key, which the registry answers with its first answer
if the two crossed: so nothing is ever placed twice. An answer to a control request (or to its key's
status, or a measure's state) that cannot be read raises `UnreadableAnswer`, an unknown outcome, never a
refusal (`connectors.base.is_refusal`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import httpx

from connectors.base import (
    AssetReport,
    ControlOutcome,
    ControlReply,
    ControlRequest,
    Health,
    InvalidReply,
    QueryReply,
    QueryRequest,
    RegistryKind,
    RejectedError,
    ReleaseRequest,
    RenewRequest,
    UnknownOutcome,
    UnreadableAnswer,
    reason_code,
)
from connectors.http import RegistryClient
from models.values import InvalidValue, format_yuan, parse_yuan

IN_FORCE = (ControlOutcome.EFFECTIVE, ControlOutcome.PARTIAL, ControlOutcome.QUEUED)


class HttpConnector(ABC):
    kind: RegistryKind
    health_path: str

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.code = client.code

    async def aclose(self) -> None:
        await self.client.aclose()

    async def health(self) -> Health:
        return await self.client.health(self.health_path)

    # The ports every registry adapter serves (connectors/base.py: QueryPort and ControlPort).

    @abstractmethod
    async def query(self, request: QueryRequest) -> QueryReply: ...

    @abstractmethod
    async def collect(self, request_ref: str) -> QueryReply: ...

    @abstractmethod
    async def control(self, request: ControlRequest) -> ControlReply: ...

    @abstractmethod
    async def renew(self, request: RenewRequest) -> ControlReply: ...

    @abstractmethod
    async def release(self, request: ReleaseRequest) -> ControlReply: ...

    @abstractmethod
    def status_path(self, idempotency_key: str) -> str: ...

    @abstractmethod
    def measure_path(self, registry_reference: str) -> str: ...

    @abstractmethod
    def control_reply(self, response: httpx.Response, key: str) -> ControlReply:
        """Parse a reply to a control request (or to a status request) into a checked `ControlReply`."""

    async def status(self, idempotency_key: str) -> ControlReply | None:
        """The registry's first answer to this key, or None when it never received it."""
        try:
            response = await self.client.call(
                "GET", self.status_path(idempotency_key), reference=idempotency_key, safe=True
            )
        except InvalidReply as exc:  # an answer came (over the size limit, ...) but cannot be read
            raise unreadable(exc) from None
        except RejectedError as exc:
            if "unknown_key" in exc.reason:
                return None
            raise
        return self.read_control(response, idempotency_key)

    async def measure_state(self, registry_reference: str, idempotency_key: str) -> ControlReply:
        """A measure's state now (a queued one may have taken effect, a partial one topped up); the
        registry answers with the key the measure was placed with."""
        try:
            response = await self.client.call(
                "GET", self.measure_path(registry_reference), reference=idempotency_key, safe=True
            )
        except InvalidReply as exc:
            raise unreadable(exc) from None
        return self.read_control(response, idempotency_key)

    async def send_control(self, path: str, key: str, **body: Any) -> ControlReply:
        """POST a control request by the rule in the module docstring; `body` is `json_body=` or
        `content=` with `headers=`."""
        try:
            return self.read_control(await self._post(path, key, body), key)
        except UnknownOutcome as first:  # lost, or answered unreadably: the key's status says what happened
            try:
                known = await self.status(key)
            except RejectedError:  # the status itself refused (not "unknown key"): the outcome stays unknown
                raise first from None
            if known is not None:
                return known
        return self.read_control(await self._post(path, key, body), key)

    async def _post(self, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self.client.call("POST", path, reference=key, safe=False, **body)
        except InvalidReply as exc:  # an answer came but cannot be read: the registry may have acted
            raise unreadable(exc) from None

    def read_control(self, response: httpx.Response, key: str) -> ControlReply:
        """`control_reply`, where an answer that fails validation is an unknown outcome (`UnreadableAnswer`):
        the registry answered, and may have acted, whatever its answer says."""
        try:
            return self.control_reply(response, key)
        except InvalidReply as exc:
            raise unreadable(exc) from None

    def checked(self, reply: ControlReply, wire_key: str) -> ControlReply:
        """What any registry's control reply must satisfy, whatever its wire format."""
        key = reply.idempotency_key
        if wire_key != key:
            raise InvalidReply(self.code, "reply names another request", key)
        if reply.outcome in IN_FORCE and (
            reply.registry_reference is None or reply.started_on is None or reply.expires_on is None
        ):
            raise InvalidReply(
                self.code, "invalid reply: a measure in force needs its reference, start and end", key
            )
        if reply.started_on and reply.expires_on and reply.expires_on < reply.started_on:
            raise InvalidReply(self.code, "invalid reply: the measure ends before it starts", key)
        if reply.outcome is ControlOutcome.QUEUED and reply.queue_position is None:
            raise InvalidReply(self.code, "invalid reply: a queued measure needs its queue position", key)
        kept = None if reply.reason is None else reason_code(reply.reason)
        return reply if kept == reply.reason else reply.model_copy(update={"reason": kept})

    def fen(self, text: str, what: str, reference: str) -> int:
        return read_fen(self.code, text, what, reference)

    def checked_query(self, reply: QueryReply) -> QueryReply:
        """What any registry's answer to a query must satisfy: an asset is listed once."""
        self.listed_once([a for r in reply.results for a in r.assets], reply.request_ref)
        return reply

    def listed_once(self, assets: Sequence[AssetReport], reference: str) -> tuple[AssetReport, ...]:
        """The assets, each listed once: the same account twice, with two balances, is a contradiction, and
        neither can be recorded as the truth."""
        keys = {(a.asset_kind, a.identifier) for a in assets}
        if len(keys) != len(assets):
            raise InvalidReply(self.code, "invalid reply: one asset is listed twice", reference)
        return tuple(assets)


def read_fen(registry: str, text: str, what: str, reference: str) -> int:
    """A registry's yuan string as fen; a bad one is an invalid reply, which never quotes the value (a
    registry that misplaces fields may have put an ID, a name or an account number there)."""
    try:
        return parse_yuan(text, what)
    except InvalidValue as exc:
        value = str(text).strip()
        rule = exc.rule.replace(repr(value), "the value")  # parse_yuan quotes what it was given
        if value and value in rule:  # quoted some other way: say less
            rule = "the value is not an amount of yuan"
        raise InvalidReply(registry, f"invalid reply: {what}: {rule}", reference) from None


def unreadable(error: InvalidReply) -> UnreadableAnswer:
    """An invalid answer to a control request, as the unknown outcome it is."""
    return UnreadableAnswer(error.registry, error.reason, error.reference)


def yuan(fen: int) -> str:
    """Fen as the yuan string registries expect: '1234.50'."""
    return format_yuan(fen).replace(",", "")
