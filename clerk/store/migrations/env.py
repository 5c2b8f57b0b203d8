"""Alembic environment: query-clerk runs migrations in-process with its own engine (clerk.db.upgrade)."""

from alembic import context
from sqlalchemy import Engine

from models.tables import Base

engine: Engine | None = context.config.attributes.get("engine")
if engine is None:
    raise RuntimeError("run migrations with `clerk db upgrade`, which passes the configured engine")

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
