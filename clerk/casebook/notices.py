"""Notices to judges and applicants (like the courts' 12368 messages): written down in the transaction
that decided them (table `notifications`, with a key), sent after. A notice is delivered once whatever
crashes in between: the gateway keys on it. Params hold case numbers, amounts and dates only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clerk.store import bulk, db
from connectors.base import RegistryError
from connectors.notify import Notice, NotifierPort
from models.tables import Case, Notification, utcnow


@dataclass(frozen=True, slots=True)
class Draft:
    """A notice to write down: to whom of which case, which template, with what params."""

    case_id: int
    to: str
    template: str
    params: Mapping[str, object]


def _row(draft: Draft) -> dict[str, object]:
    return {
        "idempotency_key": uuid.uuid4().hex,
        "case_id": draft.case_id,
        "recipient": draft.to,
        "template": draft.template,
        "params": dict(draft.params),
    }


def notify(
    session: Session, case: Case, to: str, template: str, params: Mapping[str, object]
) -> Notification:
    """Write a notice down; `send_notifications` delivers it. Params: case numbers, amounts, dates only."""
    notification = Notification(**_row(Draft(case.id, to, template, params)))
    session.add(notification)
    return notification


def notify_many(session: Session, drafts: Sequence[Draft]) -> None:
    """Write many notices down in one INSERT (rows, no ORM objects: a sweep writes one for each case with
    new hits and each measure that took effect). The cases must already be written."""
    bulk.insert_rows(session, db.table(Notification), [_row(d) for d in drafts])


def notify_case(
    session: Session, case_id: int, to: str, template: str, params: Mapping[str, object]
) -> Notification:
    case = session.get(Case, case_id)
    assert case is not None
    return notify(session, case, to, template, params)


async def send_notifications(
    sessions: sessionmaker[Session], notifier: NotifierPort, limit: int = 1000
) -> int:
    """Deliver pending notices, oldest first; at the first failure the rest stay pending for the next run.
    Returns how many were delivered."""

    def load() -> list[tuple[int, Notice]]:
        with sessions() as session:
            rows = session.execute(
                select(Notification, Case.case_number)
                .join(Case, Case.id == Notification.case_id)
                .where(Notification.status == "pending")
                .order_by(Notification.id)
                .limit(limit)
            ).all()
            return [
                (
                    n.id,
                    Notice(
                        key=n.idempotency_key,
                        case_number=number,
                        to=n.recipient,
                        template=n.template,
                        params=n.params,
                    ),
                )
                for n, number in rows
            ]

    sent = 0
    for notification_id, notice in await db.run(sessions, load):
        try:
            await notifier.send(notice)
        except RegistryError as exc:  # the gateway is down or refuses: try again next run, in order
            await db.call(sessions, _mark, notification_id, exc.reason)
            break
        await db.call(sessions, _mark, notification_id, None)
        sent += 1
    return sent


def _mark(sessions: sessionmaker[Session], notification_id: int, error: str | None) -> None:
    with sessions.begin() as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        if error is None:
            notification.status, notification.sent_at, notification.error = "sent", utcnow(), None
        else:
            notification.error = error[:500]
