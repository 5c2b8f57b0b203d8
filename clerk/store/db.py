"""The database: one engine and sessionmaker per URL, and schema upgrades through Alembic."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Dialect, Engine, Table, bindparam, create_engine, event, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

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
#: is 0.005). SQLite's driver lets go of the GIL at each row it steps through, and takes it back after;
#: while the event loop in the other thread runs registry HTTP, each take-back waits a whole interval. A
#: read of 3,000 rows that way took 8.8 s beside a busy thread at the default, 0.7 s at this and 9 ms
#: alone (bench/README.md item 23). Bulk writes avoid it outright (`_sqlite_many`).
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


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows (dicts with the same keys) in the caller's transaction, for the sweep's hot statements:
    on SQLite as multi-row INSERTs (`_sqlite_many`), on PostgreSQL in one COPY. Each column's type
    processing (a timestamp made naive UTC, a dict made JSON) runs once per distinct value, not once per row
    and column as a Core INSERT runs it (a Core INSERT of a page's 5,000 lookups spent most of its time
    there; bench/README.md item 23). The columns' Python defaults fill what the rows leave out. Nothing is
    returned: read back what needs ids."""
    if not rows:
        return
    connection = session.connection()
    names, columns = _columns(connection.dialect, table, rows, _default_of)
    if connection.dialect.name == "postgresql":
        import psycopg  # here: a SQLite clerk never loads the PostgreSQL driver
        from psycopg import sql as psql

        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        statement = psql.SQL("COPY {} ({}) FROM STDIN").format(
            psql.Identifier(table.name), psql.SQL(", ").join(map(psql.Identifier, names))
        )
        try:
            with cursor.copy(statement) as copy:
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
        except psycopg.Error as exc:  # as SQLAlchemy raises the driver's errors (IntegrityError, …)
            raise DBAPIError.instance(str(statement), None, exc, psycopg.Error) from exc
        return
    # The text names the schema's own table and columns, quoted by the dialect; every value is bound.
    quote = connection.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) VALUES "  # noqa: S608
    _sqlite_many(connection, head, "", list(zip(*columns, strict=True)))


def update_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], key: str = "id") -> None:
    """Update rows (dicts with the same keys, `key` among them: which row; the rest: its new values) in the
    caller's transaction, as `insert_rows` inserts: on SQLite as multi-row statements (`WITH v AS (VALUES
    …) UPDATE … FROM v`), on PostgreSQL in one executemany (psycopg sends it as a pipeline). Columns with an
    `onupdate` (`updated_at`) are set as a Core UPDATE sets them."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql":  # Core processes the values and sets the `onupdate`s
        same = _alike(rows, key)
        if same is not None:  # a few sets of values (a page's lookups): one `WHERE key IN (…)` each
            changed = [name for name in rows[0] if name != key]
            for values, keys in same.items():
                change = update(table).values(dict(zip(changed, values, strict=True)))
                for chunk in chunks(keys):
                    connection.execute(change.where(table.c[key].in_(chunk)))
            return
        params = [{f"new_{name}": value for name, value in row.items()} for row in rows]
        connection.execute(_pg_update(table, tuple(rows[0]), key), params)
        return
    names, columns = _columns(dialect, table, rows, _onupdate_of)
    quote = dialect.identifier_preparer.quote  # names of the schema, quoted; every value is bound
    target, alias = quote(table.name), "v"
    sets = ", ".join(f"{quote(n)} = {alias}.{quote(n)}" for n in names if n != key)
    head = f"WITH {alias}({', '.join(map(quote, names))}) AS (VALUES "
    where = f"{target}.{quote(key)} = {alias}.{quote(key)}"
    tail = f") UPDATE {target} SET {sets} FROM {alias} WHERE {where}"  # noqa: S608
    _sqlite_many(connection, head, tail, list(zip(*columns, strict=True)))


def _alike(rows: Sequence[Mapping[str, Any]], key: str) -> dict[tuple[Any, ...], list[Any]] | None:
    """The rows' keys by their values (the rest of each row), when the rows share a few sets of values;
    None when they do not (or a value is a dict)."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    try:
        for row in rows:
            groups.setdefault(tuple(v for n, v in row.items() if n != key), []).append(row[key])
    except TypeError:  # unhashable
        return None
    return groups if len(groups) * 10 <= len(rows) else None


#: The most parameters one SQLite statement takes (SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32).
SQLITE_PARAMETERS = 32_766


def _sqlite_many(connection: Connection, head: str, tail: str, rows: list[tuple[Any, ...]]) -> None:
    """`head` (…) , (…) … `tail` for as many rows as one statement takes, until all are written.

    Not `executemany`: sqlite3 lets go of the GIL at each row's step and takes it back after, and while the
    event loop runs registry HTTP in the other thread each take waits for its switch interval (5 ms). A
    page's 3,000 new assets took seconds that way; one statement takes it once (bench/README.md item 23)."""
    per = SQLITE_PARAMETERS // len(rows[0])
    group = "(" + ", ".join("?" * len(rows[0])) + ")"
    for i in range(0, len(rows), per):
        part = rows[i : i + per]
        sql = head + ", ".join([group] * len(part)) + tail
        connection.exec_driver_sql(sql, tuple(value for row in part for value in row))


def _columns(
    dialect: Dialect,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    filler: Callable[[Column[Any]], Any],
) -> tuple[tuple[str, ...], list[list[Any]]]:
    """The rows' column names with those `filler` gives a value for (the columns' Python defaults, or
    their `onupdate`s), and each column's values, bind-processed for the database."""
    given = tuple(rows[0])
    extra = {c.name: filler(c) for c in table.columns if c.name not in given}
    extra = {name: value for name, value in extra.items() if value is not _NONE}
    names = given + tuple(extra)
    columns = []
    for name in names:
        values = [row[name] for row in rows] if name in given else [extra[name]] * len(rows)
        process = _bind_processor(dialect, table.c[name])
        columns.append(values if process is None else _processed(values, process))
    return names, columns


_NONE = object()


def _default_of(column: Column[Any]) -> Any:
    """A column's Python default, once for the lot (SQLAlchemy passes a callable a context; these take
    none); `_NONE` when it has none."""
    return _generated(column.default)


def _onupdate_of(column: Column[Any]) -> Any:
    return _generated(column.onupdate)


def _generated(default: Any) -> Any:
    if default is None or not (default.is_scalar or default.is_callable):
        return _NONE
    return default.arg(None) if default.is_callable else default.arg


@functools.lru_cache(maxsize=32)
def _pg_update(table: Table, names: tuple[str, ...], key: str) -> Any:
    return (
        update(table)
        .where(table.c[key] == bindparam(f"new_{key}"))
        .values({n: bindparam(f"new_{n}") for n in names if n != key})
    )


def _bind_processor(dialect: Dialect, column: Any) -> Callable[[Any], Any] | None:
    return cast(Callable[[Any], Any] | None, column.type.dialect_impl(dialect).bind_processor(dialect))


def _processed(values: list[Any], process: Callable[[Any], Any]) -> list[Any]:
    """`process` of each value, once per distinct value where values can be told apart (timestamps, codes);
    dicts (JSON) each time."""
    done: dict[Any, Any] = {}
    out = []
    for value in values:
        try:
            out.append(done[value])
        except KeyError:
            out.append(done.setdefault(value, process(value)))
        except TypeError:  # unhashable: a dict or a list
            out.append(process(value))
    return out


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


async def write(
    sessions: sessionmaker[Session],
    func: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`in_transaction` in a worker thread, off the event loop that carries the registries' HTTP."""
    return await asyncio.to_thread(functools.partial(in_transaction, sessions, func, *args, **kwargs))


async def read(
    sessions: sessionmaker[Session],
    func: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`reading` in a worker thread."""
    return await asyncio.to_thread(functools.partial(reading, sessions, func, *args, **kwargs))


#: The most values one `IN (…)` takes here: below SQLite's default limit of 999 bound parameters.
IN_LIST = 900

E = TypeVar("E")


def chunks(items: Sequence[E], size: int = IN_LIST) -> Iterator[list[E]]:
    """`items` in lists short enough for one `IN (…)` on any database."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
