"""In-process fakes for the use-case tier: registries over the simulators' own ledgers, with no sockets and
no wire format.

`LedgerRegistry` implements the ports the use cases take (`connectors.base.RegistryPort`, and
`DeductPort` for banks) by calling the same `Ledger` the served simulators keep, so the registry's rules
(partial freezes, queues behind other authorities, first answer per idempotency key, deductions) are the
real ones; what it leaves out is HTTP, the wire formats and the HTTP adapters' checks, which the adapter
tier (respx) and the system tier (real HTTP to the simulators) test. `lose_replies` drops the next answers
after the ledger has acted on them: the reply lost on the way back, which settling by key must recover.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from clerk import context, querying
from clerk.casebook.casefile import read_case_file, write_case_file
from clerk.casebook.intake import import_cases
from clerk.context import Context
from clerk.store import db
from connectors.base import (
    AssetReport,
    ControlOutcome,
    ControlReply,
    ControlRequest,
    DeductReply,
    DeductRequest,
    Health,
    OtherMeasure,
    QueryReply,
    QueryRequest,
    RegistryKind,
    RegistryPort,
    RejectedError,
    ReleaseRequest,
    RenewRequest,
    SubjectResult,
    SubjectStatus,
    TransientError,
    UnknownOutcome,
)
from connectors.config import RegistryConfig, placeholder_configs
from connectors.court_bank import Balances, Statement, StatementLine
from connectors.simulator.court_bank import CourtBankSimulator
from connectors.simulator.ledger import Ledger, Outcome
from connectors.simulator.serve import SIMULATORS
from connectors.simulator.world import SimDebtor, case_rows, make_debtors, populate
from models.policy import Policy
from models.rules import AssetKind
from models.supervision import bureau_today

_OUTCOMES = {
    "effective": ControlOutcome.EFFECTIVE,
    "partial": ControlOutcome.PARTIAL,
    "queued": ControlOutcome.QUEUED,
    "refused": ControlOutcome.REFUSED,
    "released": ControlOutcome.RELEASED,
}


@dataclass
class LedgerRegistry:
    """One registry, in process, over its simulator's ledger."""

    code: str
    kind: RegistryKind
    ledger: Ledger
    lose_replies: int = 0  # the next this many control answers are lost after the ledger acted
    calls: list[str] = field(default_factory=list)  # what was asked, in order ("control KEY", …)

    # --- QueryPort -----------------------------------------------------------------------------------

    async def query(self, request: QueryRequest) -> QueryReply:
        self.calls.append(f"query {request.request_ref}")
        results = []
        for subject in request.subjects:
            assets = tuple(
                AssetReport(
                    asset_kind=h.kind,
                    identifier=h.identifier,
                    balance_fen=h.balance_fen,
                    description=h.description or None,
                    other_measures=tuple(
                        OtherMeasure(authority=r.authority, amount_fen=r.amount_fen, expires_on=r.until)
                        for r in h.restrictions
                    ),
                    purpose=h.purpose,
                )
                for h in self.ledger.holdings_of(subject.id_number)
            )
            status = SubjectStatus.FOUND if assets else SubjectStatus.NONE
            results.append(SubjectResult(subject_ref=subject.ref, status=status, assets=assets))
        return QueryReply(request_ref=request.request_ref, results=tuple(results))

    async def collect(self, request_ref: str) -> QueryReply:
        raise RejectedError(self.code, "unknown_request", request_ref)  # it never answers "later"

    async def health(self) -> Health:
        return Health(registry=self.code, ok=True, latency_ms=0.0)

    async def aclose(self) -> None:
        return None

    # --- ControlPort and DeductPort --------------------------------------------------------------------

    async def control(self, request: ControlRequest) -> ControlReply:
        self.calls.append(f"control {request.idempotency_key}")
        outcome = self.ledger.place(
            request.idempotency_key,
            request.case_number,
            request.asset_identifier,
            request.amount_fen,
            request.years,
        )
        return self._lost_or(self._reply(outcome))

    async def renew(self, request: RenewRequest) -> ControlReply:
        self.calls.append(f"renew {request.idempotency_key}")
        outcome = self.ledger.renew(request.idempotency_key, request.registry_reference, request.years)
        return self._lost_or(self._reply(self._known(outcome, request.idempotency_key)))

    async def release(self, request: ReleaseRequest) -> ControlReply:
        self.calls.append(f"release {request.idempotency_key}")
        outcome = self.ledger.release(request.idempotency_key, request.registry_reference, request.amount_fen)
        return self._lost_or(self._reply(self._known(outcome, request.idempotency_key)))

    async def deduct(self, request: DeductRequest) -> DeductReply:
        self.calls.append(f"deduct {request.idempotency_key}")
        outcome = self.ledger.deduct(
            request.idempotency_key, request.registry_reference, request.amount_fen, request.court_account
        )
        if outcome is None or outcome.measure is None or outcome.deducted_fen is None:
            raise RejectedError(self.code, "cannot_deduct", request.idempotency_key)
        self._lose(request.idempotency_key)
        return DeductReply(
            idempotency_key=request.idempotency_key,
            registry_reference=outcome.measure.number,
            amount_fen=outcome.deducted_fen,
            transferred_on=self.ledger.today,
        )

    async def status(self, idempotency_key: str) -> ControlReply | None:
        self.calls.append(f"status {idempotency_key}")
        outcome = self.ledger.answer(idempotency_key)
        return None if outcome is None else self._reply(outcome)

    async def measure_state(self, registry_reference: str, idempotency_key: str) -> ControlReply:
        outcome = self._known(self.ledger.current(registry_reference), idempotency_key)
        return self._reply(dataclasses.replace(outcome, key=idempotency_key))

    # --- what the HTTP adapters do with a simulator's answer, without the wire ---------------------------

    def _known(self, outcome: Outcome | None, key: str) -> Outcome:
        if outcome is None:
            raise RejectedError(self.code, "unknown_reference", key)
        return outcome

    def _lost_or(self, reply: ControlReply) -> ControlReply:
        self._lose(reply.idempotency_key)
        return reply

    def _lose(self, key: str) -> None:
        if self.lose_replies > 0:
            self.lose_replies -= 1
            raise UnknownOutcome(self.code, "the reply was lost", key)

    def _reply(self, outcome: Outcome) -> ControlReply:
        m = outcome.measure
        if outcome.result == "refused" or m is None:
            return ControlReply(
                idempotency_key=outcome.key, outcome=ControlOutcome.REFUSED, reason=outcome.reason
            )
        ahead = outcome.ahead
        return ControlReply(
            idempotency_key=outcome.key,
            outcome=_OUTCOMES[outcome.result],
            registry_reference=m.number,
            amount_fen=(m.held_fen or 0) if self.kind is RegistryKind.BANK else None,
            started_on=m.start,
            expires_on=m.end,
            queue_position=m.queue_no,
            ahead=None
            if ahead is None
            else OtherMeasure(authority=ahead.authority, amount_fen=ahead.amount_fen, expires_on=ahead.until),
        )


@dataclass
class CourtBankInProcess:
    """The court's bank, in process, over its simulator's books (`connectors.court_bank.CourtBankPort`);
    the camt wire format is tested over HTTP in tests/adapters/test_court_bank.py."""

    sim: CourtBankSimulator
    lose_replies: int = 0  # the next this many calls fail after the bank acted (as a lost reply)
    page: int = 2_000
    calls: list[str] = field(default_factory=list)

    async def open_subaccount(self, key: str, case_number: str) -> str:
        self.calls.append(f"open {key}")
        number = self.sim.books.open(key, case_number)
        self._lose(key)
        return number

    async def entries(self, after: int, wait_s: float = 0) -> Statement:  # no one waits in process
        self.calls.append(f"entries {after}")
        found = self.sim.books.listed(after, self.page)
        lines = tuple(
            StatementLine(
                seq=e.seq,
                reference=e.reference,
                booked_at=e.booked_at,
                value_date=e.value_date,
                amount_fen=e.amount_fen,
                credit=e.credit,
                subaccount=e.account,
                reversal_of=e.reversal_of,
                counterparty_account=e.payer_account,
                counterparty_name=e.payer_name,
                remittance=e.remittance,
            )
            for e in found
        )
        self._lose(f"entries-{after}")
        return Statement(lines=lines, last=lines[-1].seq if lines else after)

    async def balances(self, through: int | None = None) -> Balances:
        self.calls.append("balances")
        books = self.sim.books
        stood = len(books.entries) if through is None else through
        return Balances(through=stood, master=books.master, accounts=books.balances(stood))

    async def aclose(self) -> None:
        pass

    def _lose(self, reference: str) -> None:
        if self.lose_replies > 0:
            self.lose_replies -= 1
            raise TransientError("court-bank", "reply lost (simulated)", reference)


@dataclass
class FakeWorld:
    """A seeded world held by in-process registries, and its case file (the same world `tests.world`
    serves over HTTP for the same seed)."""

    registries: dict[str, LedgerRegistry]
    debtors: list[SimDebtor]
    case_file: Path
    configs: list[RegistryConfig]
    court_bank: CourtBankInProcess

    def ledger_measures(self) -> dict[str, object]:
        """Every measure every registry holds, by idempotency key."""
        return {m.key: m for r in self.registries.values() for m in r.ledger.measures.values()}

    def context(self, sessions: sessionmaker[Session], **options: Any) -> Context:
        """The use cases' context for this world's registries (`context_for`'s options)."""
        return context_for(sessions, self.registries, self.configs, **options)

    def keys_sent(self, verb: str = "control") -> list[str]:
        """Every key sent with `verb`, over all registries, once per sending."""
        return [c.split(" ", 1)[1] for r in self.registries.values() for c in r.calls if c.startswith(verb)]


def fake_world(tmp: Path, debtors: int, seed: int, now: dt.datetime) -> FakeWorld:
    """The four test registries (two banks, real estate, vehicles), held in process."""
    configs = placeholder_configs(batch_size=50)
    today = bureau_today(now)
    sims = [SIMULATORS[c.kind](c.code, c.credential.get_secret_value(), today=today) for c in configs]
    people = make_debtors(random.Random(seed), debtors)
    populate(sims, people, seed, now)
    case_file = tmp / "fake-world-cases.csv"
    write_case_file(case_file, case_rows(people, seed, today))
    registries = {
        s.code: LedgerRegistry(c.code, c.kind, s.ledger) for s, c in zip(sims, configs, strict=True)
    }
    court = CourtBankSimulator("court-bank", "sim-token", today=today)
    for sim in sims:
        sim.ledger.clearing = court.receive  # deductions are paid into the court's bank
    return FakeWorld(registries, people, case_file, configs, CourtBankInProcess(court))


def context_for(
    sessions: sessionmaker[Session],
    ports: Mapping[str, RegistryPort],
    configs: Sequence[RegistryConfig],
    *,
    at: dt.datetime | dt.date | None = None,
    actor: str = "system",
    policy: Policy | None = None,
    court_account: str = "",
) -> Context:
    """The use cases' context for these registries (in process or over HTTP) and their configs (their rows
    made sure of, their batch sizes), its clock stopped `at` when given (a day: its noon in China)."""
    ids = db.in_transaction(sessions, querying.ensure_registries, configs)
    sizes = {c.code: c.batch_size for c in configs}
    ctx = Context(sessions, context.registries(ports, ids, sizes), policy or Policy(), actor, court_account)
    if at is None:
        return ctx
    return ctx.at(at) if isinstance(at, dt.datetime) else ctx.on(at)


def book(
    sessions: sessionmaker[Session], world: FakeWorld, now: dt.datetime, actor: str
) -> tuple[dict[str, int], list[int]]:
    """The world's cases imported into the case book, its registries' rows: their ids by code, and the
    first page of debtors due at `now`."""
    rows, _ = read_case_file(world.case_file, max_bytes=10**7, today=now.date())
    with sessions.begin() as session:
        import_cases(session, rows, actor=actor)
    registry_ids = db.in_transaction(sessions, querying.ensure_registries, world.configs)
    with sessions() as session:
        return registry_ids, querying.due_page(session, now, querying.Schedule(), 0, 100)


def deposits(world: FakeWorld) -> Iterator[tuple[LedgerRegistry, str]]:
    """(registry, account) of every deposit the world holds."""
    for registry in world.registries.values():
        for h in registry.ledger.holdings.values():
            if h.kind is AssetKind.DEPOSIT:
                yield registry, h.identifier
