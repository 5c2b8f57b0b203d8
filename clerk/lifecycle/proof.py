"""Use case: prove who decides, before a decision moves money (the rules: `models.proof`).

A decision names a person; the person proves it is theirs with a one-time code sent to their phone or a
signature with their own key, bound to the run, the case, the verdict and the amount. A decision without
proof has a code sent (to the phone CLERK_PEOPLE registers for the person, or, for the case's own judge,
to the judge's phone the SMS gateway knows from the case system, as the 12368 notices go) and is refused
until the code comes back. Every refusal is audited (`access.refused`, with the reason, never the code);
wrong codes are counted per run and per person, and past their limit no code is taken for a while and the
case's judge is told. The code is spent in the transaction that writes the decision (`spend`): once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from clerk.casebook import notices
from clerk.context import Context
from clerk.settings import Settings
from clerk.store import audit
from connectors.base import RegistryError
from connectors.notify import Notice, NotifierPort
from models import proof
from models.access import Person
from models.proof import Binding, Limits, Proven
from models.tables import Case, DecisionCode
from models.values import InvalidValue, mask_account

#: How many of a person's recent codes a typed code is compared with (each comparison is one scrypt).
CANDIDATES = 8


@dataclass(frozen=True, slots=True)
class Prover:
    """How decisions are proven here: whether proof is required, the codes' limits, the SMS gateway."""

    required: bool = True
    limits: Limits = field(default_factory=Limits)
    notifier: NotifierPort | None = None

    @classmethod
    def of(cls, settings: Settings, notifier: NotifierPort | None) -> Prover:
        return cls(settings.decision_proof, settings.proof_limits, notifier)


@dataclass(frozen=True, slots=True)
class Offered:
    """The proof that came with a decision (either, or neither); never shown, logged or kept as given."""

    code: str = field(default="", repr=False)
    signature: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Proved:
    """How a decision was proven, as the audit trail keeps it: the code's row, or the key's id."""

    by: Proven
    code_id: int | None = None
    key_id: str | None = None

    def audit(self) -> dict[str, object]:
        if self.by is Proven.CODE:
            return {"by": self.by.value, "code": self.code_id}
        return {"by": self.by.value, "key": self.key_id}


class CodeSpent(ValueError):
    """The code was spent by another decision in the meantime (two submissions at once)."""


def spend(session: Session, proved: Proved | None, now: dt.datetime) -> None:
    """Mark the code used, in the transaction that writes the decision: a second use finds it spent."""
    if proved is None or proved.code_id is None:
        return
    done = session.execute(
        update(DecisionCode)
        .where(DecisionCode.id == proved.code_id, DecisionCode.used_at.is_(None))
        .values(used_at=now)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise CodeSpent("the code was used already (a code is good once)")


async def prove(
    ctx: Context,
    prover: Prover,
    binding: Binding,
    offered: Offered,
    people: Mapping[str, Person],
    case_id: int,
    case_judge: str,
) -> Proved | str:
    """How this decision is proven, or why it is not (audited; a code sent when none came). `case_id` and
    `case_judge` are the case's that `binding` names."""
    person = people.get(binding.person)
    if offered.signature.strip():
        return _by_key(ctx, binding, offered.signature, person)
    if offered.code.strip():
        return await _by_code(ctx, prover, binding, case_id, offered.code)
    phone = person.phone if person else None
    if not phone and binding.person != case_judge:
        why = (
            "sign it with your key: clerk approve --key FILE"
            if person and person.public_key
            else "neither a phone nor a public key is registered for this person (CLERK_PEOPLE): who cannot "
            "prove a decision cannot make one"
        )
        return _refused(ctx, binding, why)
    if prover.notifier is None:
        return _refused(ctx, binding, "no SMS gateway is set (CLERK_NOTIFIER_URL) to send a code: sign with "
                        "clerk approve --key FILE")  # fmt: skip
    return await _send_code(ctx, prover, binding, case_id, phone)


def _refused(ctx: Context, binding: Binding, reason: str) -> str:
    """Audit a refusal (who is really acting, the claimed person beside it) and return its reason."""
    payload = {"who": binding.person, "action": "decide", "reason": f"proof: {reason}", "run": binding.run}
    with ctx.sessions.begin() as session:
        audit.append(
            session, "access.refused", actor=ctx.actor, case_number=binding.case_number, payload=payload
        )
    return reason


def _by_key(ctx: Context, binding: Binding, signature: str, person: Person | None) -> Proved | str:
    if person is None or not person.public_key:
        return _refused(ctx, binding, "no public key is registered for this person (CLERK_PEOPLE)")
    key = proof.public_key(person.public_key, "public_key")
    why = proof.check_signature(key, binding, signature)
    if why is not None:
        return _refused(ctx, binding, why)
    return Proved(Proven.KEY, key_id=proof.key_id(key))


# --- codes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Standing:
    """A person's recent codes (newest first) and the wrong tries counted within the lockout."""

    issued: list[proof.Issued]
    run_tries: int
    person_tries: int


def _standing(session: Session, binding: Binding, now: dt.datetime, limits: Limits) -> _Standing:
    since = now - dt.timedelta(seconds=limits.lockout_s)
    rows = session.execute(
        select(DecisionCode, Case.case_number)
        .join(Case, Case.id == DecisionCode.case_id)
        .where(DecisionCode.person == binding.person)
        .order_by(DecisionCode.id.desc())
        .limit(CANDIDATES)
    ).all()
    counted = select(func.coalesce(func.sum(DecisionCode.tries), 0)).where(DecisionCode.last_try_at > since)
    run_tries = session.scalar(counted.where(DecisionCode.run == binding.run)) or 0
    person_tries = session.scalar(counted.where(DecisionCode.person == binding.person)) or 0
    issued = [
        proof.Issued(
            row.id,
            Binding(row.run, number, row.person, row.approve, row.amount_fen),
            row.salt,
            row.sealed,
            row.issued_at,
            row.expires_at,
            row.used_at is not None,
            row.tries,
        )
        for row, number in rows
    ]
    return _Standing(issued, run_tries, person_tries)


def _unlocked(ctx: Context, binding: Binding, limits: Limits) -> _Standing | str:
    """The person's standing, or why no code is taken now (too many wrong ones; audited)."""
    with ctx.sessions() as session:
        standing = _standing(session, binding, ctx.now(), limits)
    locked = proof.locked(standing.run_tries, standing.person_tries, limits)
    return _refused(ctx, binding, locked) if locked else standing


async def _by_code(ctx: Context, prover: Prover, binding: Binding, case_id: int, typed: str) -> Proved | str:
    now, limits = ctx.now(), prover.limits
    standing = _unlocked(ctx, binding, limits)
    if isinstance(standing, str):
        return standing
    matched: proof.Issued | None = None
    try:
        code = proof.parse_code(typed)
    except InvalidValue as exc:
        why: str | None = str(exc)
    else:
        matched, why = await asyncio.to_thread(proof.check_code, code, binding, standing.issued, now)
    if why is None and matched is not None:
        return Proved(Proven.CODE, code_id=matched.id)
    _count_try(ctx, binding, case_id, matched, now, standing, limits)
    if prover.notifier is not None:  # the judge told when the limit was reached
        await notices.send_notifications(ctx.sessions, prover.notifier)
    return _refused(ctx, binding, why or "wrong code")


def _count_try(
    ctx: Context,
    binding: Binding,
    case_id: int,
    matched: proof.Issued | None,
    now: dt.datetime,
    standing: _Standing,
    limits: Limits,
) -> None:
    """A wrong try counted against the run's newest code for this person (the code it opened, when it
    opened one of this run); past a limit the case's judge is told that no code is taken for a while."""
    with ctx.sessions.begin() as session:
        target = (
            matched.id
            if matched is not None and matched.binding.run == binding.run
            else session.scalar(
                select(DecisionCode.id)
                .where(DecisionCode.run == binding.run, DecisionCode.person == binding.person)
                .order_by(DecisionCode.id.desc())
                .limit(1)
            )
        )
        if target is None:  # no code of this run for this person: the try counts on an expired, unsent one
            target = _write_code(session, binding, case_id, proof.new_code(), now, dt.timedelta(0))
        session.execute(
            update(DecisionCode)
            .where(DecisionCode.id == target)
            .values(tries=DecisionCode.tries + 1, last_try_at=now)
        )
        if proof.locked(standing.run_tries + 1, standing.person_tries + 1, limits) and not proof.locked(
            standing.run_tries, standing.person_tries, limits
        ):
            params = {"case": binding.case_number, "minutes": limits.lockout_minutes}
            notices.notify_case(session, case_id, "judge", "decision.locked", params)


def _write_code(
    session: Session, binding: Binding, case_id: int, code: str, now: dt.datetime, ttl: dt.timedelta
) -> int:
    salt = proof.new_salt()
    row = DecisionCode(
        run=binding.run,
        case_id=case_id,
        person=binding.person,
        approve=binding.approve,
        amount_fen=binding.amount_fen,
        salt=salt,
        sealed=proof.seal(code, salt),
        issued_at=now,
        expires_at=now + ttl,
        tries=0,
    )
    session.add(row)
    session.flush()
    return row.id


async def _send_code(ctx: Context, prover: Prover, binding: Binding, case_id: int, phone: str | None) -> str:
    """Send a new code for exactly this decision (unless one went out moments ago) and say where."""
    now, limits = ctx.now(), prover.limits
    standing = _unlocked(ctx, binding, limits)
    if isinstance(standing, str):
        return standing
    where = (
        f"the phone ending {mask_account(phone)[-4:]}" if phone else "the case's judge's phone (case system)"
    )
    recent = now - dt.timedelta(seconds=limits.resend_after_s)
    if any(i.binding == binding and i.live(now) and i.issued_at > recent for i in standing.issued):
        return _refused(ctx, binding, f"no proof: a code for this decision went to {where} moments ago; "
                        "enter it in the code field")  # fmt: skip
    code = proof.new_code()
    ttl = dt.timedelta(seconds=limits.code_ttl_s)
    with ctx.sessions.begin() as session:
        _write_code(session, binding, case_id, code, now, ttl)
    notice = Notice(
        key=uuid.uuid4().hex,
        case_number=binding.case_number,
        to="person" if phone else "judge",
        phone=phone,
        template="decision.code",
        params={
            "code": code,
            "case": binding.case_number,
            "decision": "approve" if binding.approve else "reject",
            "amount_fen": binding.amount_fen,
            "run": binding.run[:8],
            "minutes": limits.code_minutes,
        },
    )
    assert prover.notifier is not None
    try:
        await prover.notifier.send(notice)
    except RegistryError:
        return _refused(ctx, binding, "no proof, and the SMS gateway did not take the code: decide again")
    minutes = limits.code_minutes
    return _refused(
        ctx,
        binding,
        f"{proof.CODE_SENT} {binding.words()} was sent to {where}, good for {minutes} min; enter it in "
        "the code field with the same decision and amount",
    )
