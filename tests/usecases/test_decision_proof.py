"""A decision that moves money proves who made it (`clerk.lifecycle.proof`, `models.proof`), on the database
(SQLite and PostgreSQL), with in-process registries and an in-process SMS gateway (the judge's phone): a
decision without proof has a code sent and is refused; a code for another run, case, person, verdict or
amount, an expired code, a replayed code and too many wrong tries are each refused and audited, the run
keeps waiting and nothing moves; a valid code or signature moves exactly the approved amount, once. The
code itself is never on the audit trail."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import lifecycle
from clerk.context import Context
from clerk.lifecycle.decision import Accepted, Decision, Verdict, carry_out, weigh
from clerk.lifecycle.deduction import HOLDING_MONEY
from clerk.lifecycle.proof import Offered, Prover
from connectors.notify import Notice
from models import proof
from models.access import Person, Role
from models.proof import Limits
from models.tables import AuditEvent, Case, ControlMeasure, DecisionCode, Notification, Payment
from tests.fakes import FakeWorld
from tests.usecases.test_exactly_once import NOW, TODAY, at_work, sweep, world_in_book

SUPERVISOR = "钱局长"
PHONE = "13800138000"


class Phone:
    """The SMS gateway in process: what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[Notice] = []

    async def send(self, notice: Notice) -> None:
        self.sent.append(notice)

    async def aclose(self) -> None:
        pass

    def codes(self) -> list[str]:
        return [str(n.params["code"]) for n in self.sent if n.template == "decision.code"]


@dataclasses.dataclass
class Desk:
    """A case with money frozen, its deduction proposed, the judge's phone and the court's rules."""

    sessions: sessionmaker[Session]
    world: FakeWorld
    ctx: Context
    proposal: lifecycle.DeductionProposal
    phone: Phone
    prover: Prover
    people: dict[str, Person]
    run: str = "run-1"

    async def weigh(self, decision: Decision, run: str | None = None) -> Accepted | str:
        return await weigh(self.ctx, self.proposal, decision, self.people, self.prover, run or self.run)

    def decide(self, decision: Decision, run: str | None = None) -> Accepted | str:
        return asyncio.run(self.weigh(decision, run))

    def approve(
        self, code: str = "", amount_fen: int | None = None, judge: str | None = None
    ) -> Accepted | str:
        return self.decide(Decision(judge or self.proposal.judge, True, amount_fen, offered=Offered(code)))

    def code_for(self, decision: Decision, run: str | None = None) -> str:
        """Decide without proof (a code is sent) and read the code off the phone."""
        before = len(self.phone.codes())
        refused = self.decide(decision, run)
        assert isinstance(refused, str) and refused.startswith(proof.CODE_SENT), refused
        assert len(self.phone.codes()) == before + 1
        return self.phone.codes()[-1]

    def refusals(self) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(AuditEvent.payload)
                    .where(AuditEvent.action == "access.refused")
                    .order_by(AuditEvent.seq)
                )
            )

    def moved_fen(self) -> int:
        return sum(amount for r in self.world.registries.values() for _, amount in r.ledger.deducted)


@pytest.fixture
def desk(sessions: sessionmaker[Session], tmp_path: Path) -> Desk:
    world = world_in_book(sessions, tmp_path, debtors=60, seed=5)
    sweep(sessions, world)
    with sessions() as session:
        number = session.scalars(
            select(Case.case_number)
            .join(ControlMeasure, ControlMeasure.case_id == Case.id)
            .where(*HOLDING_MONEY, ControlMeasure.actual_amount_fen > 200)
            .order_by(Case.id)
        ).first()
    assert number is not None
    ctx = at_work(sessions, world)
    proposal = _proposal(ctx, number)
    phone = Phone()
    people = {SUPERVISOR: Person(frozenset({"*"}), frozenset({Role.SUPERVISOR}), phone=PHONE)}
    return Desk(sessions, world, ctx, proposal, phone, Prover(True, Limits(), phone), people)


def _proposal(ctx: Context, number: str) -> lifecycle.DeductionProposal:
    with ctx.sessions() as session:
        judge = session.scalar(select(Case.judge).where(Case.case_number == number))
    assert judge is not None
    return lifecycle.start_deduction(ctx, number, judge, {}, "run-1")


def test_a_decision_without_proof_has_a_code_sent_and_is_refused_and_nothing_moves(desk: Desk) -> None:
    refused = desk.approve()
    assert isinstance(refused, str) and refused.startswith(proof.CODE_SENT)
    total = desk.proposal.total_fen
    [sms] = desk.phone.sent
    # Dynamic linking: the SMS says what the code approves, to the case's judge (the gateway knows the phone).
    assert sms.to == "judge" and sms.case_number == desk.proposal.case_number
    assert sms.params["decision"] == "approve" and sms.params["amount_fen"] == total
    assert len(desk.refusals()) == 1 and '"reason": "proof: no proof' in desk.refusals()[0]
    # A second decision moments later sends no second SMS: the code sent is the one to enter.
    again = desk.approve()
    assert isinstance(again, str) and "moments ago" in again and len(desk.phone.sent) == 1
    assert desk.moved_fen() == 0


def test_a_valid_code_moves_exactly_the_approved_amount_once(desk: Desk) -> None:
    part = desk.proposal.total_fen - 100
    code = desk.code_for(Decision(desk.proposal.judge, True, part))
    accepted = desk.approve(code, part)
    assert isinstance(accepted, Accepted) and accepted.proved is not None
    outcome = asyncio.run(carry_out(desk.ctx, desk.proposal, accepted, 0))
    assert outcome.verdict is Verdict.APPROVED and outcome.approved_fen == part
    assert desk.moved_fen() == part
    # The same code again, for the same decision: replayed, refused, audited; nothing moves twice.
    replayed = desk.approve(code, part)
    assert isinstance(replayed, str) and "used already" in replayed
    assert "proof: the code was used already" in desk.refusals()[-1]
    again = asyncio.run(carry_out(desk.ctx, desk.proposal, accepted, 0))  # the accepted decision resent
    assert again.verdict is Verdict.FAILED and "used already" in again.message
    assert desk.moved_fen() == part
    with desk.sessions() as session:
        paid = session.scalar(select(func.sum(Payment.amount_fen)).where(Payment.source == "deduction"))
        approved = session.scalars(
            select(AuditEvent.payload).where(AuditEvent.action == "deduction.approved")
        ).one()
    assert paid == part
    assert '"proof": {"by": "code", "code": ' in approved
    assert not re.search(rf"(?<![0-9a-f]){code}(?![0-9a-f])", " ".join([approved, *desk.refusals()]))


@pytest.mark.parametrize(
    ("other", "why"),
    [
        ("amount", "another amount (approve"),
        ("run", "another run"),
        ("verdict", "an approval"),
        ("person", "wrong code"),
    ],
)
def test_a_code_for_another_decision_is_refused(desk: Desk, other: str, why: str) -> None:
    judge, total = desk.proposal.judge, desk.proposal.total_fen
    code = desk.code_for(Decision(judge, True))
    decision = {
        "amount": Decision(judge, True, total - 1, offered=Offered(code)),  # 1 fen less: void
        "run": Decision(judge, True, offered=Offered(code)),
        "verdict": Decision(judge, False, reason="已履行", offered=Offered(code)),
        "person": Decision(SUPERVISOR, True, offered=Offered(code)),  # his codes are not the judge's
    }[other]
    refused = desk.decide(decision, "run-2" if other == "run" else None)
    assert isinstance(refused, str) and why in refused, refused
    assert desk.moved_fen() == 0
    assert f'"reason": "proof: {refused}' in desk.refusals()[-1]


def test_a_code_for_another_case_is_refused(desk: Desk) -> None:
    code = desk.code_for(Decision(SUPERVISOR, True))  # a supervisor at every court: allowed on both cases
    with desk.sessions() as session:
        other = session.execute(
            select(Case.id, Case.case_number).where(Case.case_number != desk.proposal.case_number).limit(1)
        ).one()
    desk.proposal = dataclasses.replace(desk.proposal, case_id=other.id, case_number=other.case_number)
    refused = desk.decide(Decision(SUPERVISOR, True, offered=Offered(code)))
    assert isinstance(refused, str) and "another case" in refused, refused
    assert desk.moved_fen() == 0


def test_an_expired_code_is_refused_and_a_new_one_can_be_had(desk: Desk) -> None:
    code = desk.code_for(Decision(desk.proposal.judge, True))
    desk.ctx = desk.ctx.at(NOW + dt.timedelta(minutes=6))
    refused = desk.approve(code)
    assert isinstance(refused, str) and "expired" in refused
    assert "proof: the code has expired" in desk.refusals()[-1] and desk.moved_fen() == 0
    fresh = desk.code_for(Decision(desk.proposal.judge, True))
    assert isinstance(desk.approve(fresh), Accepted)


def test_wrong_codes_past_the_limit_lock_the_decision_and_the_judge_is_told(desk: Desk) -> None:
    code = desk.code_for(Decision(desk.proposal.judge, True))
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(Limits().tries_per_run):
        refused = desk.approve(wrong)
        assert refused == "wrong code"
    locked = desk.approve(code)  # even the right code, while locked
    assert isinstance(locked, str) and "no code is taken for 15 min" in locked
    assert "proof: 5 wrong codes for this decision" in desk.refusals()[-1]
    assert sum('"reason": "proof: wrong code"' in r for r in desk.refusals()) == 5
    assert desk.moved_fen() == 0
    with desk.sessions() as session:
        told = session.scalars(select(Notification).where(Notification.template == "decision.locked")).all()
    assert len(told) == 1 and told[0].recipient == "judge"
    desk.ctx = desk.ctx.at(NOW + dt.timedelta(minutes=16))  # the lockout over: a new code works
    fresh = desk.code_for(Decision(desk.proposal.judge, True))
    assert isinstance(desk.approve(fresh), Accepted)


def test_a_malformed_code_is_refused_by_name_without_echoing_it(desk: Desk) -> None:
    desk.code_for(Decision(desk.proposal.judge, True))
    refused = desk.approve("12a4567")
    assert refused == "code: a code is the 6 digits of the SMS"
    assert "12a4567" not in " ".join(desk.refusals())


def test_a_rejection_needs_proof_too(desk: Desk) -> None:
    rejection = Decision(desk.proposal.judge, False, reason="申请人撤回")
    code = desk.code_for(rejection)
    accepted = desk.decide(dataclasses.replace(rejection, offered=Offered(code)))
    assert isinstance(accepted, Accepted)
    outcome = asyncio.run(carry_out(desk.ctx, desk.proposal, accepted, 0))
    assert outcome.verdict is Verdict.REJECTED and desk.moved_fen() == 0


def test_a_supervisor_gets_the_code_on_the_registered_phone_and_one_with_neither_cannot_decide(
    desk: Desk,
) -> None:
    refused = desk.decide(Decision(SUPERVISOR, True))
    assert isinstance(refused, str) and "the phone ending 8000" in refused
    assert desk.phone.sent[-1].to == "person" and desk.phone.sent[-1].phone == PHONE
    desk.people["孙庭长"] = Person(frozenset({"*"}), frozenset({Role.SUPERVISOR}))
    nobody = desk.decide(Decision("孙庭长", True))
    assert isinstance(nobody, str) and "neither a phone nor a public key" in nobody


def test_a_signature_with_the_persons_own_key_proves_the_decision(desk: Desk) -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    desk.people[SUPERVISOR] = Person(frozenset({"*"}), frozenset({Role.SUPERVISOR}), public_key=public)
    decision = Decision(SUPERVISOR, True, 200)
    bound = lifecycle.decision.binding(desk.proposal, decision, desk.run)
    # Signed for another amount: void. Signed by another key: void.
    for signature in (
        proof.sign(key, dataclasses.replace(bound, amount_fen=201)),
        proof.sign(Ed25519PrivateKey.generate(), bound),
        "not base64!",
    ):
        refused = desk.decide(dataclasses.replace(decision, offered=Offered(signature=signature)))
        assert isinstance(refused, str) and "not this person's" in refused
    accepted = desk.decide(dataclasses.replace(decision, offered=Offered(signature=proof.sign(key, bound))))
    assert isinstance(accepted, Accepted) and accepted.proved is not None
    assert accepted.proved.key_id == proof.key_id(key.public_key())
    outcome = asyncio.run(carry_out(desk.ctx, desk.proposal, accepted, 0))
    assert outcome.verdict is Verdict.APPROVED and desk.moved_fen() == 200
    with desk.sessions() as session:
        approved = session.scalars(
            select(AuditEvent.payload).where(AuditEvent.action == "deduction.approved")
        ).one()
    assert f'"proof": {{"by": "key", "key": "{accepted.proved.key_id}"}}' in approved


def test_codes_are_kept_sealed(desk: Desk) -> None:
    code = desk.code_for(Decision(desk.proposal.judge, True))
    with desk.sessions() as session:
        row = session.scalars(select(DecisionCode)).one()
    assert code.encode() not in row.sealed and row.sealed == proof.seal(code, row.salt)
    assert row.expires_at - row.issued_at == dt.timedelta(minutes=5)
    assert NOW.date() == TODAY
