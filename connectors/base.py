"""What every registry connector speaks: typed requests and replies, the ports, and the error tree.

Errors, by what the caller must do (like httpx's tree, split by meaning, not by message):

    RegistryError                  base: carries registry, request reference and a short reason
    ├── TransientError             timeout, connection error, 5xx, 429: retried with backoff by the HTTP layer
    │   └── RegistryUnavailable    the circuit breaker is open: the registry is skipped for a while
    ├── RejectedError              4xx, unknown account or reference: never retried; record and show it
    │   └── InvalidReply           the reply failed validation (wrong types, absurd amounts, bad XML, ...)
    └── UnknownOutcome             a control request whose reply was lost: ask `status(idempotency_key)`,
        │                          never send a second freeze
        └── UnreadableAnswer       a control request's answer (or its key's status) came but cannot be read
                                   or fails validation: the registry may have acted on it; the request
                                   stays open at its claim, is flagged for a person, and is settled by key

Only a refusal (`is_refusal`: the registry's own "rejected", a 4xx) ends a control request as failed. An
answer to a query that cannot be read is an `InvalidReply`: the lookup failed, and nothing was placed.

They never carry personal data (IDs, names, account numbers) and they pickle, since Prefect moves them
between processes. Amounts are integer fen; dates are the registry's dates.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from models.rules import AssetKind
from models.values import DebtorKind, mask_account, mask_id

# --- errors -------------------------------------------------------------------------------------------


class RegistryError(Exception):
    def __init__(self, registry: str, reason: str, reference: str | None = None) -> None:
        super().__init__(registry, reason, reference)
        self.registry = registry
        self.reason = reason
        self.reference = reference

    def __str__(self) -> str:
        ref = f" [{self.reference}]" if self.reference else ""
        return f"{self.registry}{ref}: {self.reason}"

    def __reduce__(self) -> tuple[type[RegistryError], tuple[str, str, str | None]]:
        return (type(self), (self.registry, self.reason, self.reference))


class TransientError(RegistryError):
    """Worth trying again later; `retry_after` is the registry's own hint in seconds, if it gave one."""

    def __init__(
        self, registry: str, reason: str, reference: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(registry, reason, reference)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[RegistryError], tuple[str, str, str | None, float | None]]:  # type: ignore[override]
        return (type(self), (self.registry, self.reason, self.reference, self.retry_after))


class RegistryUnavailable(TransientError):
    """The registry failed too often lately; it is skipped until its circuit breaker closes again."""


class RejectedError(RegistryError):
    """The registry refused the request, or its answer makes no sense: sending it again will not help."""


class InvalidReply(RejectedError):
    """The reply did not pass validation."""


class UnknownOutcome(RegistryError):
    """A control request may or may not have been applied: resolve it with `status(idempotency_key)`."""


class UnreadableAnswer(UnknownOutcome):
    """A control request was answered, but the answer cannot be read or fails validation (an amount that is
    negative, NaN, 1e30 or a word; a body that is not the format; a reply in force without its reference).
    The registry may have acted on it, so it is never a refusal: ask `status(idempotency_key)` later."""


def is_refusal(error: RegistryError) -> bool:
    """Whether an error from a control request (freeze, seizure, renewal, release, deduction) means the
    registry refused it, so that nothing was placed, renewed, lifted or moved: a `RejectedError` (a 4xx,
    or a request refused before it was sent). An answer that could not be read is never one, whichever
    class a connector raised for it (`InvalidReply` or `UnreadableAnswer`): it is an unknown outcome."""
    return isinstance(error, RejectedError) and not isinstance(error, InvalidReply)


def is_unreadable(error: RegistryError) -> bool:
    """Whether a control request's answer arrived but could not be read (flagged for a person, once)."""
    return isinstance(error, (InvalidReply, UnreadableAnswer))


_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


def reason_code(text: str) -> str:
    """A registry's reason as we keep it (in errors, results and the audit trail): a code
    (`insufficient_balance`, `E_ACCOUNT_CLOSED`), or "not a code" when it is free text or holds a long run of
    digits (an ID or an account echoed back)."""
    if _CODE.fullmatch(text) and not re.search(r"[0-9]{6}", text):
        return text
    return "not a code (withheld: it may hold personal data)"


# --- messages -----------------------------------------------------------------------------------------


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Subject(Message):
    """A debtor to ask about. `ref` is our opaque handle (never personal); the rest is personal data and
    is masked in `repr`, so that it cannot reach a log by accident."""

    ref: str = Field(min_length=1, max_length=64)
    kind: DebtorKind
    id_number: str = Field(min_length=18, max_length=18, repr=False)
    name: str = Field(min_length=1, max_length=200, repr=False)

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "id_number", mask_id(self.id_number)


class OtherMeasure(Message):
    """Another authority's measure on an asset, as the registry reported it."""

    authority: str
    amount_fen: int | None = Field(None, ge=0)
    expires_on: dt.date | None = None


class AssetReport(Message):
    """One hit."""

    asset_kind: AssetKind
    identifier: str = Field(min_length=1, max_length=64, repr=False)
    balance_fen: int | None = Field(None, ge=0)
    description: str | None = None
    other_measures: tuple[OtherMeasure, ...] = ()
    # The account's type or purpose as the bank names it (a code: e.g. migrant_wage); the clerk's settings
    # say which purposes the law protects (models.exemptions).
    purpose: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,31}$")

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "identifier", mask_account(self.identifier)


class SubjectStatus(StrEnum):
    FOUND = "found"  # one or more assets
    NONE = "none"  # the registry holds nothing for this subject ("no account")
    PENDING = "pending"  # accepted, answer later: collect with `collect`


class SubjectResult(Message):
    subject_ref: str
    status: SubjectStatus
    assets: tuple[AssetReport, ...] = ()


class QueryRequest(Message):
    """Many subjects in one request. `request_ref` identifies it at the registry (and in our logs)."""

    request_ref: str = Field(min_length=1, max_length=64)
    subjects: tuple[Subject, ...] = Field(min_length=1)


class QueryReply(Message):
    request_ref: str
    results: tuple[SubjectResult, ...]


class MeasureKind(StrEnum):
    FREEZE = "freeze"
    SEIZURE = "seizure"


class ControlOutcome(StrEnum):
    EFFECTIVE = "effective"  # in force for the whole amount asked
    PARTIAL = "partial"  # in force, for less than asked (the balance was lower)
    QUEUED = "queued"  # behind another authority's measure; takes effect when that one is lifted
    PENDING = "pending"  # accepted, answer later
    REFUSED = "refused"  # not placed: `reason` says why
    RELEASED = "released"  # lifted (reply to a release, or the status of a lifted measure)


class ControlRequest(Message):
    """Freeze (deposits, with an amount) or seize (real estate, vehicles). The idempotency key makes a
    repeated request get the first answer."""

    idempotency_key: str = Field(min_length=8, max_length=64)
    case_number: str
    subject_ref: str
    asset_identifier: str = Field(repr=False)
    kind: MeasureKind
    amount_fen: int | None = Field(None, gt=0)
    years: int = Field(1, ge=1, le=3)


class ControlReply(Message):
    idempotency_key: str
    outcome: ControlOutcome
    registry_reference: str | None = None
    amount_fen: int | None = Field(None, ge=0)  # what is actually held
    started_on: dt.date | None = None
    expires_on: dt.date | None = None
    queue_position: int | None = Field(None, ge=1)
    ahead: OtherMeasure | None = None  # the earlier measure we queue behind
    reason: str | None = None
    # What the registry says it acted on, where its answers name it (banks do): checked against what was
    # asked (clerk.control.answers); an account number is personal data, kept out of repr and logs.
    account: str | None = Field(None, repr=False)
    case_number: str | None = None


class RenewRequest(Message):
    idempotency_key: str = Field(min_length=8, max_length=64)
    registry_reference: str
    years: int = Field(1, ge=1, le=3)


class ReleaseRequest(Message):
    """Lift a measure, whole (`amount_fen` None) or in part (an over-freeze cut back)."""

    idempotency_key: str = Field(min_length=8, max_length=64)
    registry_reference: str
    amount_fen: int | None = Field(None, gt=0)


class DeductRequest(Message):
    """Transfer frozen funds to the court's case account (一案一账户)."""

    idempotency_key: str = Field(min_length=8, max_length=64)
    registry_reference: str
    amount_fen: int = Field(gt=0)
    court_account: str = Field(repr=False)


class DeductReply(Message):
    idempotency_key: str
    registry_reference: str
    amount_fen: int = Field(ge=0)
    transferred_on: dt.date


class DepositEvent(Message):
    """A deposit that landed on an account, from a bank's push feed."""

    seq: int = Field(ge=1)
    identifier: str = Field(min_length=1, max_length=64, repr=False)
    amount_fen: int = Field(gt=0)
    balance_fen: int = Field(ge=0)
    at: dt.datetime

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "identifier", mask_account(self.identifier)


class DepositFeed(Message):
    """Events after a cursor, and the cursor to ask from next time."""

    events: tuple[DepositEvent, ...]
    last: int = Field(ge=0)


class Health(Message):
    registry: str
    ok: bool
    latency_ms: float
    detail: str = ""


# --- ports --------------------------------------------------------------------------------------------


class RegistryKind(StrEnum):
    BANK = "bank"
    REAL_ESTATE = "real_estate"
    VEHICLE = "vehicle"


@runtime_checkable
class QueryPort(Protocol):
    code: str
    kind: RegistryKind

    async def query(self, request: QueryRequest) -> QueryReply: ...

    async def collect(self, request_ref: str) -> QueryReply: ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ControlPort(Protocol):
    async def control(self, request: ControlRequest) -> ControlReply: ...

    async def renew(self, request: RenewRequest) -> ControlReply: ...

    async def release(self, request: ReleaseRequest) -> ControlReply: ...

    async def status(self, idempotency_key: str) -> ControlReply | None: ...

    async def measure_state(self, registry_reference: str, idempotency_key: str) -> ControlReply: ...


@runtime_checkable
class RegistryPort(QueryPort, ControlPort, Protocol):
    """A registry the clerk queries and controls: what the use cases take. The HTTP adapters are one kind;
    the tests' in-process fake over the simulators' ledgers (tests/fakes.py) is another."""


@runtime_checkable
class DeductPort(Protocol):
    async def deduct(self, request: DeductRequest) -> DeductReply: ...


@runtime_checkable
class BalancePort(Protocol):
    """Registries that answer the balance of known accounts (the deposit watch polls them)."""

    async def balances(self, request_ref: str, identifiers: list[str]) -> tuple[AssetReport, ...]: ...


@runtime_checkable
class FeedPort(Protocol):
    """Registries that push deposits: a long poll of events after a cursor."""

    async def deposits(self, after: int, wait_s: float) -> DepositFeed: ...
