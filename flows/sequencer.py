"""The audit log's sequencer: every 10 minutes, place the events written since the last run in the log, extend
its Merkle tree and sign its head (clerk.store.tree). One at a time: the deployment's concurrency limit,
and a database lock only the sequencer takes (writers never wait on it). `seal` is the same step for any
flow that wants its own events in a signed head before it ends (the daily report, the demo)."""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed
from sqlalchemy.orm import Session, sessionmaker

from clerk.settings import Settings, get_settings
from clerk.store import db, tree
from flows import runtime


async def seal(sessions: sessionmaker[Session], settings: Settings) -> tree.Sequenced:
    """Place what is waiting and sign the head (tree.seal), off the event loop."""
    return await db.call(sessions, tree.seal, settings)


@flow(name="audit-sequencer", flow_run_name=runtime.run_name("audit-sequencer"))
async def audit_sequencer() -> State:
    """Place the audit events written since the last run in the log and sign its tree head."""
    settings = get_settings()
    engine = await asyncio.to_thread(db.engine_for, settings.effective_database_url)
    done = await seal(db.session_factory(engine), settings)
    head = f"; signed head {done.head.short}" if done.head else ""
    get_run_logger().info("audit log: %d event(s) placed, %d in all%s", done.placed, done.size, head)
    return Completed(message=f"{done.placed} event(s) placed; the log holds {done.size}{head}")
