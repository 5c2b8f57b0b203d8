"""The database: one engine and sessionmaker per URL, and schema upgrades through Alembic."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Engine,
    Select,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute, Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"

#: A process's connections to a SQLite file: one. Every transaction here begins IMMEDIATE (below), so SQLite
#: runs them one at a time however many connections there are; with one, a database thread waits in the
#: pool's queue and starts the moment the other commits, instead of in SQLite's busy handler (which sleeps
#: up to 100 ms between tries), and the connection's page cache stays valid between transactions (SQLite
#: empties a connection's cache whenever another connection has written; bench/README.md, item 15, has the
#: figures). Other processes on the same file (shards, the CLI) still meet in the busy handler. A checkout
#: waits up to `pool_timeout` seconds: a session opened inside another one in the same thread would wait
#: that long and fail, never deadlock.
ONE_CONNECTION: dict[str, Any] = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60}

#: That connection's page cache, in MiB (SQLite's default is 2): a sweep inserts into indexes on random keys
#: (audit hashes, idempotency keys, asset identifiers) all over a file that grows to gigabytes.
SQLITE_CACHE_MB = 64


#: The interpreter's thread switch interval, in seconds, in a process with a SQLite engine (Python's default
#: is 0.005). SQLite's driver lets go of the GIL at each row it steps through (a read's rows, an
#: executemany's), and takes it back after; while the event loop in the other thread runs registry HTTP,
#: each take-back waits for it to let go, up to an interval. `python -m bench convoy`: 3,000 rows inserted
#: by executemany beside a busy thread took 107 ms at the default, 61 ms at this, 26 ms alone (bench/README.md
#: item 23). The sweep's bulk writes take one step per statement (`clerk.store.bulk`).
SQLITE_SWITCH_INTERVAL = 0.0005


def make_engine(url: str) -> Engine:
    """An engine for `url`. SQLite gets foreign keys on, WAL, a busy timeout, a larger page cache, its
    parent folder and a shorter thread switch interval (`SQLITE_SWITCH_INTERVAL`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        sys.setswitchinterval(min(sys.getswitchinterval(), SQLITE_SWITCH_INTERVAL))
        pool: dict[str, Any] = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            pool = ONE_CONNECTION
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_MB * 1024}")  # negative: in KiB
            cursor.close()
            dbapi_conn.isolation_level = None  # transactions begin below, not in pysqlite

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            # A deferred transaction reads a snapshot and may write later: two of them can plan from the
            # same reads, or fail to upgrade ("database is locked"). IMMEDIATE takes the write lock first,
            # so writers on SQLite run one after another (PostgreSQL uses row and advisory locks instead).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Apply every migration not yet applied. Returns (revision before, revision after)."""
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, current_revision(engine)


def ensure_schema(engine: Engine) -> None:
    """Upgrade the schema if it is behind: every command that needs the database calls this first."""
    if current_revision(engine) != head_revision():
        upgrade(engine)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    engine = make_engine(url)
    ensure_schema(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def insert_missing(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING, on SQLite and PostgreSQL: rows that another process inserted first
    are left as they are, instead of failing the transaction."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    session.execute(insert(table).values(rows).on_conflict_do_nothing())


def upsert(
    session: Session,
    table: Table,
    columns: Sequence[str],
    keys: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE of the other columns, on SQLite and PostgreSQL, handed to the
    driver's executemany as plain SQL and tuples: for tables derived from others and kept up to date (the
    audit log's per-case index). Multi-row VALUES spent 90 % of the time in SQLAlchemy's compiler, and a
    Core executemany half of it in SQLAlchemy's per-row parameters."""
    if not rows:
        return
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    others = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    names, marks = ", ".join(columns), ", ".join([mark] * len(columns))
    # Names from our own tables, values bound:
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT ({', '.join(keys)}) "  # noqa: S608
    connection.exec_driver_sql(sql + f"DO UPDATE SET {others}", list(rows))


def table(model: type[DeclarativeBase]) -> Table:
    """A model's table, for Core statements on the sweep's hot paths: rows go in and out as tuples and
    dicts, without the ORM's objects and unit of work (a third to a quarter of the CPU per row;
    bench/README.md item 13)."""
    return cast(Table, model.__table__)


def expire_cached(session: Session, model: type[DeclarativeBase], ids: Iterable[int]) -> None:
    """After a Core UPDATE of these rows: the session's objects of them, if it holds any, are read again
    the next time they are used instead of showing what they were before."""
    for ident in ids:
        cached = session.identity_map.get(session.identity_key(model, ident))
        if cached is not None:
            session.expire(cached)


P = ParamSpec("P")
T = TypeVar("T")


def in_transaction(
    sessions: sessionmaker[Session],
    func: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`func(session, *args)` in a transaction of its own: committed if it returns, rolled back if it
    raises."""
    with sessions.begin() as session:
        return func(session, *args, **kwargs)


def reading(
    sessions: sessionmaker[Session],
    func: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`func(session, *args)` on a session that only reads (rolled back at the end)."""
    with sessions() as session:
        return func(session, *args, **kwargs)


async def run(sessions: sessionmaker[Session], func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """A blocking database step (`func(*args)`) from async code: in a worker thread, so that the event loop
    carries the registries' HTTP while the database server works; on SQLite in the event loop's own thread.

    SQLite is no server: its work is this process's CPU, under the GIL, and a worker thread only adds GIL
    hand-overs with the event loop, several per statement and one per row read (`python -m bench convoy`).
    The sweep at 20,000 debtors on SQLite took 22.1 s of CPU with its steps here against 25.4 s in a thread
    (medians of four alternating rounds; bench/README.md item 24). A step holds the loop for its length
    (tens of ms to a few hundred a page): requests already sent are answered meanwhile and read after.
    Either way the step is a point where other tasks run first (a page's control starts before the next
    page is read)."""
    if sessions.kw.get("bind") is not None and sessions.kw["bind"].dialect.name == "sqlite":
        await asyncio.sleep(0)
        return func(*args, **kwargs)
    return await asyncio.to_thread(func, *args, **kwargs)


async def call(
    sessions: sessionmaker[Session],
    func: Callable[Concatenate[sessionmaker[Session], P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """A blocking step that opens its own transactions on `sessions` (`func(sessions, *args)`), run as `run`
    runs it."""
    return await run(sessions, func, sessions, *args, **kwargs)


@contextlib.contextmanager
def rolled_back(sessions: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    """Sessions whose every transaction is a savepoint in one that is rolled back at the end: what the
    steps write, each step sees, and nothing stays (a dry run). One connection: its steps run one by one."""
    engine = sessions.kw["bind"]
    with engine.connect() as connection:
        outer = connection.begin()
        try:
            yield sessionmaker(
                bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
        finally:
            outer.rollback()


async def write(
    sessions: sessionmaker[Session],
    func: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`in_transaction` as a blocking database step (`run`)."""
    return await run(sessions, functools.partial(in_transaction, sessions, func, *args, **kwargs))


async def read(
    sessions: sessionmaker[Session],
    func: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`reading` as a blocking database step (`run`)."""
    return await run(sessions, functools.partial(reading, sessions, func, *args, **kwargs))


def all_rows(session: Session, statement: Select[Any]) -> list[Any]:
    """Every row of a read, as named tuples (`row.name`, or unpacked), in no order: sort what needs one.

    On SQLite the rows come in one step of the driver: `json_group_array` gathers them into one value,
    parsed here, each column then processed as SQLAlchemy processes it (dates, timestamps, JSON). The
    driver lets go of the GIL at every row it steps, and waits to take it back whenever another thread
    runs: 1,000 rows of ids and names read row by row cost 1.3 ms of CPU alone and 8.2 ms beside a busy
    thread; in one step 0.8 and 1.0 ms. For reads of plain columns (ids, numbers, text: the sweep's); a
    column processed in Python per row (a timestamp) makes it slower than a plain read alone (`python -m
    bench convoy`; bench/README.md item 24). On PostgreSQL the driver reads a result whole anyway: the
    statement runs as it is."""
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":
        return list(session.execute(statement).tuples())
    inner = statement.subquery()
    columns = list(inner.c)
    row = _row_type(tuple(c.key for c in statement.selected_columns))
    packed = session.execute(select(func.json_group_array(func.json_array(*columns)))).scalar_one()
    processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
    if not any(processors):
        return [row(*values) for values in json.loads(packed)]
    return [
        row(*[v if p is None or v is None else p(v) for p, v in zip(processors, values, strict=True)])
        for values in json.loads(packed)
    ]


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Any:
    return collections.namedtuple("Row", names, rename=True)


#: The most values one `IN (…)` takes here: below SQLite's default limit of 999 bound parameters.
IN_LIST = 900


def among(
    session: Session, column: ColumnElement[Any] | QueryableAttribute[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """`column IN (values)` for `session`'s database: on PostgreSQL `column = ANY(:values)`, the values
    bound as one array. Bound one by one, as `IN` binds them, each read of a page's ids was rendered with
    900 placeholders, which SQLAlchemy and the driver then each handled: 64 ms against 18 ms for a read of
    5,000 ids (bench/README.md item 26). PostgreSQL plans both alike (it turns an IN list into an array)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


E = TypeVar("E")


def chunks(items: Sequence[E], size: int = IN_LIST) -> Iterator[list[E]]:
    """`items` in lists short enough for one `IN (…)` on any database."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
