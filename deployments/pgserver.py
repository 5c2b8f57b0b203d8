"""PostgreSQL from Debian's packages, run from a directory of its own on 127.0.0.1: a throwaway cluster for
the tests and benchmarks (`postgres_server`: a temporary directory, a free port, deleted afterwards), and the
lasting one `clerk up` keeps under the data directory (`PostgresServer.at`).

Debian's binaries are used (scripts/ensure-postgres installs them when missing). PostgreSQL refuses to run
as root, so under root the cluster is owned by, and run as, the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        subprocess.run([str(ROOT / "scripts" / "ensure-postgres")], check=True)  # noqa: S603 - our own script
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster. `durable` (the default, and always for `clerk up`'s lasting cluster) keeps PostgreSQL's
    own settings: every commit is flushed to disk. Only a throwaway cluster that nothing outlives may run with
    `fsync=off`, which after an operating-system crash or a power cut can leave the whole cluster corrupt,
    not merely a few commits short."""

    def __init__(
        self, bindir: Path, base: Path, port: int, user: str | None, *, durable: bool = True
    ) -> None:
        self.bindir, self.base, self.port, self._user = bindir, base, port, user
        self.durable = durable
        self.datadir = base / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, cwd=self.base)  # noqa: S603 - PostgreSQL binaries

    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy's URL of `database`: psycopg for the clerk, asyncpg for a Prefect server."""
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )

    def start(self) -> None:
        """Start (or start again after `stop`) the server on its data directory."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base}"
        if not self.durable:
            options += " -c fsync=off"
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-o",
            options,
            "-l",
            str(self.base / "log"),
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if result.returncode != 0:
            log = (self.base / "log").read_text(errors="replace") if (self.base / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}\n{log[-2000:]}")

    def stop(self, mode: str = "immediate") -> None:
        """Stop: `immediate` for throwaway clusters, `fast` (a clean shut-down) for lasting ones."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def psql(self, sql: str) -> str:
        """Run one statement as the postgres user; returns its rows, unaligned."""
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAq", "-c", sql
        ).stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    @classmethod
    def at(cls, base: Path, port: int, *, create: bool = True) -> PostgresServer:
        """The cluster in `base` (created there the first time, unless `create` is false), on `port`."""
        user = _run_as()
        base.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(base, user)
        server = cls(_bindir(), base, port, user)
        if create and not (server.datadir / "PG_VERSION").exists():
            try:
                server.init()
            except subprocess.CalledProcessError as exc:
                hint = f" (the {user} user must be able to reach {base})" if user else ""
                raise RuntimeError(f"initdb in {base} failed{hint}: {exc.stderr.strip()[-500:]}") from None
        return server

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.datadir), "status", check=False).returncode == 0

    def wait_ready(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"PostgreSQL did not accept connections on 127.0.0.1:{self.port} in {seconds:.0f} s"
        )

    def has_database(self, name: str) -> bool:
        return self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"  # noqa: S608 - our own constant names


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root: under root, the `postgres` user Debian's package created."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam("postgres")  # KeyError names it if missing
    return "postgres"


@contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A throwaway cluster, deleted afterwards. Not `durable` by default (`fsync=off`: the tests' clusters
    hold nothing worth a flush); the benchmarks ask for `durable`, so that their figures are a production
    cluster's."""
    user = _run_as()
    base = Path(tempfile.mkdtemp(prefix="clerk-pg-"))
    if user:
        shutil.chown(base, user)
    server = PostgresServer(_bindir(), base, _free_port(), user, durable=durable)
    try:
        server.init()
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
