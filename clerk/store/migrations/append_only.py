"""Triggers that make a table append-only: UPDATE and DELETE (and TRUNCATE on PostgreSQL) fail.

Used by migrations for the audit log. One column may be named `set_once`: an UPDATE that only sets it
from NULL to a value, changing nothing else, passes (the sequencer placing an event in the log); any
other UPDATE fails. A superuser can still drop the triggers: that is what the Merkle tree, the signed
heads and `clerk audit verify` are for.
"""

from __future__ import annotations

from sqlalchemy import Connection, text


def create_append_only(conn: Connection, table: str, set_once: str | None = None) -> None:
    if conn.dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            when = ""
            if verb == "UPDATE" and set_once:
                columns = [row[1] for row in conn.execute(text(f"PRAGMA table_info({table})"))]
                same = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in columns if c != set_once)
                when = f"WHEN NOT (OLD.{set_once} IS NULL AND NEW.{set_once} IS NOT NULL AND {same}) "
            conn.execute(
                text(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} {when}"
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} is refused'); END"
                )
            )
        return
    allow = (
        f"""
                IF TG_OP = 'UPDATE' AND OLD.{set_once} IS NULL AND NEW.{set_once} IS NOT NULL
                        AND to_jsonb(NEW) - '{set_once}' = to_jsonb(OLD) - '{set_once}' THEN
                    RETURN NEW;
                END IF;"""
        if set_once
        else ""
    )
    conn.execute(
        text(
            f"""
            CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN{allow}
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
