"""Bulk writes for the sweep's hot statements: rows in, one statement (or COPY) out, without the ORM.

`insert_rows` and `update_rows` write a page's lookups, assets, measures, audit events and notices. A Core
INSERT of a page's 5,000 lookups spent most of its time in per-row, per-column type processing; here each
column's values are processed once per distinct value. On SQLite they are multi-row statements, never
`executemany`: the driver lets go of the GIL at every row it steps and takes it back after, and while the
event loop in the other thread runs registry HTTP each take-back waits for it to let go (`python -m bench
convoy`; bench/README.md item 23). On PostgreSQL inserts go by COPY.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Column, Connection, Dialect, Table, bindparam, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from clerk.store.db import among, chunks


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """`insert_columns` of rows (dicts with the same keys)."""
    if not rows:
        return []
    return insert_columns(session, table, _by_column(rows))


def insert_columns(session: Session, table: Table, given: Mapping[str, Sequence[Any]]) -> list[int]:
    """Insert rows given column by column (each column's values, all as long; no `id`) in the caller's
    transaction: on SQLite as multi-row INSERTs, on PostgreSQL in one COPY (its errors raised as SQLAlchemy
    raises the driver's: a unique key's as `IntegrityError`). The columns' Python defaults fill what is
    not given, once for the lot.

    Returns the new rows' ids (their autoincrement key's values), in order, without reading the rows back:
    on SQLite, each statement's rows take consecutive rowids ending at the statement's last one (SQLite
    gives a new row "one larger than the largest ROWID in the table prior to the insert", and nothing else
    inserts while a statement runs); on PostgreSQL, whose COPY tells nothing, they are taken from the key's
    sequence in one statement first and copied with the rows, as the column's default would have taken
    them one by one. (Reading 5,000 ids back by a key cost each page of a sweep a read on both databases,
    and on SQLite a GIL hand-over per row: bench/README.md items 24 and 26.) A table without an
    autoincrement key: [] (nothing to tell)."""
    if not given or not next(iter(given.values())):
        return []
    connection = session.connection()
    names, columns = _columns(connection.dialect, table, given, _default_of)
    key = table.autoincrement_column
    if connection.dialect.name == "postgresql":
        import psycopg  # here: a SQLite clerk never loads the PostgreSQL driver
        from psycopg import sql as psql

        ids: list[int] = []
        if key is not None:
            ids = _reserve_ids(connection, table, key.name, len(columns[0]))
            names, columns = (key.name, *names), [ids, *columns]
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
        return ids
    # The text names the schema's own table and columns, quoted by the dialect; every value is bound.
    quote = connection.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) VALUES "  # noqa: S608
    rowids: list[int] = []
    for count, last in _sqlite_many(connection, head, "", list(zip(*columns, strict=True))):
        if not last or last >= _LARGEST_ROWID:  # at the largest rowid SQLite picks new ones at random
            raise RuntimeError(f"{table.name}: SQLite did not tell the rowids of an insert")
        rowids.extend(range(last - count + 1, last + 1))
    return rowids if key is not None else []


def _reserve_ids(connection: Connection, table: Table, key: str, count: int) -> list[int]:
    """`count` new values of `table`'s `key` from its sequence (PostgreSQL), in one statement. Other
    writers take theirs from the same sequence: no two rows get one value, though a writer's need not
    follow one another."""
    reserve = text(  # the sequence is looked up once, not once a row (a third of the time at 5,000 rows)
        "SELECT nextval(s.seq) FROM (SELECT pg_get_serial_sequence(:table, :key)::regclass AS seq) AS s "
        "CROSS JOIN generate_series(1, :count)"
    )
    rows = connection.execute(reserve, {"table": table.name, "key": key, "count": count})
    return [value for (value,) in rows]


#: SQLite's largest rowid (2**63 - 1).
_LARGEST_ROWID = 2**63 - 1


def update_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], key: str = "id") -> None:
    """Update rows (dicts with the same keys, `key` among them: which row; the rest: its new values) in the
    caller's transaction: on SQLite as multi-row statements (`WITH v AS (VALUES …) UPDATE … FROM v`), on
    PostgreSQL in one executemany (psycopg sends it as a pipeline). Columns with an `onupdate`
    (`updated_at`) are set as a Core UPDATE sets them. Rows that all take the same values: `set_values`."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql":
        params = [{f"new_{name}": value for name, value in row.items()} for row in rows]
        connection.execute(_pg_update(table, tuple(rows[0]), key), params)
        return
    names, columns = _columns(dialect, table, _by_column(rows), _onupdate_of)
    quote = dialect.identifier_preparer.quote  # names of the schema, quoted; every value is bound
    target, alias = quote(table.name), "v"
    sets = ", ".join(f"{quote(n)} = {alias}.{quote(n)}" for n in names if n != key)
    head = f"WITH {alias}({', '.join(map(quote, names))}) AS (VALUES "
    where = f"{target}.{quote(key)} = {alias}.{quote(key)}"
    tail = f") UPDATE {target} SET {sets} FROM {alias} WHERE {where}"  # noqa: S608
    _sqlite_many(connection, head, tail, list(zip(*columns, strict=True)))


#: The most parameters one SQLite statement takes (SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32).
SQLITE_PARAMETERS = 32_766


def set_values(session: Session, table: Table, values: Mapping[str, Any], ids: Sequence[int]) -> None:
    """Set the same values on many rows (a page's lookups answered by one request), in the caller's
    transaction: one `UPDATE … WHERE id IN (…)` (per `chunks`), which Core processes and gives the
    columns' `onupdate`s. On SQLite 7 ms for a page's 5,000 lookups, against 12–23 ms as `update_rows`."""
    connection = session.connection()
    change = update(table).values(dict(values))
    for chunk in chunks(ids):
        connection.execute(change.where(among(session, table.c.id, chunk)))


def _sqlite_many(
    connection: Connection, head: str, tail: str, rows: list[tuple[Any, ...]]
) -> list[tuple[int, int | None]]:
    """`head` (…) , (…) … `tail` for as many rows as one statement takes, until all are written: one step
    of the driver per statement, not one per row (the module says why). Each statement's rows and the
    connection's last inserted rowid after it."""
    per = SQLITE_PARAMETERS // len(rows[0])
    group = "(" + ", ".join("?" * len(rows[0])) + ")"
    done: list[tuple[int, int | None]] = []
    for i in range(0, len(rows), per):
        part = rows[i : i + per]
        sql = head + ", ".join([group] * len(part)) + tail
        result = connection.exec_driver_sql(sql, tuple(itertools.chain.from_iterable(part)))
        done.append((len(part), result.lastrowid))
    return done


def _by_column(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {name: list(map(itemgetter(name), rows)) for name in rows[0]}


def _columns(
    dialect: Dialect,
    table: Table,
    given: Mapping[str, Sequence[Any]],
    filler: Callable[[Column[Any]], Any],
) -> tuple[tuple[str, ...], list[list[Any]]]:
    """The given columns' names with those `filler` gives a value for (the columns' Python defaults, or
    their `onupdate`s), and each column's values, bind-processed for the database."""
    count = len(next(iter(given.values())))
    extra = {c.name: filler(c) for c in table.columns if c.name not in given}
    extra = {name: value for name, value in extra.items() if value is not _NONE}
    names = tuple(given) + tuple(extra)
    columns = []
    for name in names:
        values = list(given[name]) if name in given else [extra[name]] * count
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
