"""Triggers that make a table append-only: UPDATE and DELETE (and TRUNCATE on PostgreSQL) fail.

Used by migrations for the audit trail. A superuser can still drop the triggers: that is what the hash
chain and `clerk audit verify` are for.
"""

from __future__ import annotations

from sqlalchemy import Connection, text


def create_append_only(conn: Connection, table: str) -> None:
    if conn.dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            conn.execute(
                text(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} is refused'); END"
                )
            )
        return
    conn.execute(
        text(
            f"""
            CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{table} is append-only: % is refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
    )
    conn.execute(
        text(
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )
    )
    conn.execute(
        text(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()"
        )
    )


def drop_append_only(conn: Connection, table: str) -> None:
    if conn.dialect.name == "sqlite":
        for verb in ("update", "delete"):
            conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{verb}"))
        return
    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}"))
    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}"))
    conn.execute(text(f"DROP FUNCTION IF EXISTS {table}_append_only()"))
