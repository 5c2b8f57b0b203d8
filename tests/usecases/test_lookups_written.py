"""When lookups are written (clerk/querying/batch.py, `query_page`): a sweep's page writes each lookup
once, with its answer, after every registry has answered; a case query's batch, whose debtors another
registry's batch may stamp first, writes its lookups down (`sent`) before its request leaves. Recording the
same replies again writes nothing twice. Real case book (SQLite and PostgreSQL); in-process registries
that look at the book while a request is out."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from clerk import context, querying
from clerk.context import Context
from clerk.querying import record
from clerk.store import db
from connectors.base import QueryReply, QueryRequest, RegistryError, RegistryUnavailable
from models.tables import Asset, Query
from tests.fakes import FakeWorld, LedgerRegistry, book, fake_world

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
ACTOR = "flow-run:test"


@dataclass
class Watching:
    """A registry that, while each request is out, reads the run's lookups of it from the book."""

    registry: LedgerRegistry
    sessions: sessionmaker[Session]
    registry_id: int
    run_id: int
    fail: bool = False
    seen: list[Counter[str]] = field(default_factory=list)  # per request: the lookups' statuses

    @property
    def code(self) -> str:
        return self.registry.code

    async def query(self, request: QueryRequest) -> QueryReply:
        def look() -> Counter[str]:
            with self.sessions() as session:
                statuses = session.scalars(
                    select(Query.status).where(
                        Query.run_id == self.run_id, Query.registry_id == self.registry_id
                    )
                )
                return Counter(statuses)

        self.seen.append(await asyncio.to_thread(look))
        if self.fail:
            raise RegistryUnavailable(self.code, "down for the test")
        return await self.registry.query(request)

    def __getattr__(self, name: str) -> object:
        return getattr(self.registry, name)


def booked(sessions: sessionmaker[Session], tmp_path: Path) -> tuple[FakeWorld, dict[str, int], list[int]]:
    world = fake_world(tmp_path, debtors=30, seed=34, now=NOW)
    return world, *book(sessions, world, NOW, ACTOR)


def lookups(sessions: sessionmaker[Session], run_id: int) -> list[tuple[str, int, str, bool]]:
    """(registry code's id, debtor, status, answered after sent) of the run's lookups."""
    with sessions() as session:
        rows = session.execute(
            select(Query.registry_id, Query.debtor_id, Query.status, Query.sent_at, Query.answered_at).where(
                Query.run_id == run_id
            )
        )
        return [
            (str(r), d, status, answered is None or answered >= sent) for r, d, status, sent, answered in rows
        ]


def test_a_sweep_page_writes_each_lookup_once_with_its_answer(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """While a page's requests are out, none of its lookups is in the book; after, each is there once,
    answered after it was sent, or failed with its registry's reason, and the page's debtors are not yet
    stamped (the sweep stamps them)."""
    world, registry_ids, debtor_ids = booked(sessions, tmp_path)
    run_id = db.in_transaction(sessions, querying.start_run, "sweep")
    watching = {
        code: Watching(r, sessions, registry_ids[code], run_id, fail=code == "vehicles")
        for code, r in world.registries.items()
    }
    ctx = Context(sessions, context.registries(watching, registry_ids, 10), actor=ACTOR)
    batches = asyncio.run(querying.query_page(ctx, run_id, debtor_ids))

    assert all(seen == Counter() for w in watching.values() for seen in w.seen), "nothing written ahead"
    assert sum(len(w.seen) for w in watching.values()) == len(batches) == 4 * -(-len(debtor_ids) // 10)
    written = lookups(sessions, run_id)
    assert len(written) == 4 * len(debtor_ids)
    assert len({(r, d) for r, d, _, _ in written}) == len(written), "each lookup once"
    by_registry = {
        code: Counter(s for r, _, s, _ in written if r == str(registry_ids[code])) for code in watching
    }
    assert by_registry["vehicles"] == Counter(failed=len(debtor_ids))
    for code in set(watching) - {"vehicles"}:
        assert by_registry[code] == Counter(answered=len(debtor_ids)), code
    assert all(in_order for *_, in_order in written)
    with sessions() as session:
        errors = set(session.scalars(select(Query.error).where(Query.status == "failed")))
        assert errors == {"vehicles: down for the test"}
        assert len(querying.due_page(session, NOW, querying.Schedule(), 0, 100)) == len(debtor_ids)


def test_a_case_query_batch_writes_its_lookups_down_before_its_request_leaves(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A case query asks each registry in a task of its own, each stamping the debtors it answered: its
    lookups are in the book as `sent` while its request is out, so that a crash then leaves them
    unanswered and the debtors due (tests/system/test_crashes.py)."""
    world, registry_ids, debtor_ids = booked(sessions, tmp_path)
    run_id = db.in_transaction(sessions, querying.start_run, "case query")
    bank = Watching(world.registries["bank-a"], sessions, registry_ids["bank-a"], run_id)
    ctx = Context(sessions, context.registries({"bank-a": bank}, registry_ids, 50), actor=ACTOR)
    asyncio.run(querying.query_batch(ctx, "bank-a", run_id, debtor_ids))

    assert bank.seen == [Counter(sent=len(debtor_ids))]
    assert Counter(s for _, _, s, _ in lookups(sessions, run_id)) == Counter(answered=len(debtor_ids))


def test_recording_the_same_replies_again_writes_nothing_twice(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A page's replies recorded, then recorded again (no lookup ids given: they are found by their key):
    the same lookups, updated, and the same assets."""
    world, registry_ids, debtor_ids = booked(sessions, tmp_path)
    run_id = db.in_transaction(sessions, querying.start_run, "sweep")

    async def ask() -> list[record.Reply]:
        replies = []
        for code, registry in world.registries.items():
            request = QueryRequest(
                request_ref=f"r-{code}",
                subjects=tuple(db.reading(sessions, querying.subjects, debtor_ids)),
            )
            answer: QueryReply | RegistryError = await registry.query(request)
            assert isinstance(answer, QueryReply)
            replies.append(record.Reply(registry_ids[code], code, answer))
        return replies

    replies = asyncio.run(ask())
    counts = []
    for _ in range(2):
        with sessions.begin() as session:
            record.record_replies(session, run_id, replies, ACTOR)
        with sessions() as session:
            counts.append(
                (
                    session.scalar(select(func.count()).select_from(Query)),
                    session.scalar(select(func.count()).select_from(Asset)),
                    session.scalar(select(func.count()).select_from(Query).where(Query.status == "answered")),
                )
            )
    found = {(r.registry_id, a.identifier) for r in replies for s in r.reply.results for a in s.assets}
    assert found, "the world's debtors hold something"
    assert counts[0] == counts[1] == (4 * len(debtor_ids), len(found), 4 * len(debtor_ids))
