from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the database stack is imported by the fixtures that need it, not here: the domain
    # tier (tests/domain) runs with pytest and hypothesis alone (scripts/domain-tests)
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from deployments.pgserver import PostgresServer

TODAY = dt.date(2026, 11, 23)
_db_names = itertools.count(1)
_PREFECT_HOME = pytest.StashKey[tuple[str, str | None]]()  # (this process's, the one it replaced)


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest process (`make test` runs two, pytest-xdist's workers) gets a Prefect home of its own.

    The temporary Prefect servers the flows start keep their SQLite database under PREFECT_HOME: two
    processes must not share one, and the tests must not write into the user's ~/.prefect. It is set before
    any test module imports Prefect (Prefect reads its settings once, at import); the subprocesses the tests
    start inherit it.
    """
    home = tempfile.mkdtemp(prefix="clerk-tests-prefect-")
    config.stash[_PREFECT_HOME] = (home, os.environ.get("PREFECT_HOME"))
    os.environ["PREFECT_HOME"] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    home, before = config.stash.get(_PREFECT_HOME, (None, None))
    if home is None:
        return
    shutil.rmtree(home, ignore_errors=True)
    if before is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = before


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that take minutes first (stable otherwise): pytest-xdist hands each worker a test or two at
    a time (`--dist load --maxschedchunk 2`), so the long ones spread over both and the short ones fill in."""
    items.sort(key=lambda item: item.get_closest_marker("minutes") is None)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    from deployments.pgserver import postgres_server

    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'clerk.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"clerk_test_{next(_db_names)}")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    from clerk.store import db

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    from clerk.store import db

    return db.session_factory(engine)


@pytest.fixture
def clerk_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Iterator[str]:
    """Settings for CLI tests: this test's database, data under tmp_path, a named actor."""
    from clerk.settings import get_settings
    from clerk.store import db

    monkeypatch.setenv("CLERK_DATABASE_URL", database_url)
    monkeypatch.setenv("CLERK_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CLERK_ACTOR", "tester")
    from connectors.simulator.serve import free_loopback_ports

    # A port nothing listens on: `clerk query` finds no `clerk serve` this machine may be running. Nor a
    # PREFECT_API_URL an earlier test's `clerk query` set in this process (it sets it when a server answers):
    # removed here, and whatever this test's sets is removed after it.
    monkeypatch.setenv("CLERK_PREFECT_PORT", str(free_loopback_ports(1)[0]))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()
    db.engine_for.cache_clear()
