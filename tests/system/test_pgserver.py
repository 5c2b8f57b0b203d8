"""PostgreSQL from Debian's packages: `clerk up`'s lasting cluster flushes every commit to disk; only a
throwaway cluster (the tests') runs with `fsync=off`, and the benchmarks ask for a durable one."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from connectors.simulator.serve import free_loopback_ports
from deployments.pgserver import PostgresServer, postgres_server

pytestmark = pytest.mark.postgres


def settings(server: PostgresServer) -> tuple[str, str]:
    return server.psql("SHOW fsync").strip(), server.psql("SHOW synchronous_commit").strip()


def test_the_lasting_cluster_flushes_every_commit() -> None:
    # As `clerk up` makes and starts it (deployments/cluster.py); the postgres user must reach the folder.
    base = Path(tempfile.mkdtemp(prefix="clerk-up-pg-"))
    base.chmod(0o755)
    (port,) = free_loopback_ports(1)
    server = PostgresServer.at(base / "pg", port)
    try:
        server.start()
        server.wait_ready()
        assert settings(server) == ("on", "on")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(("durable", "fsync"), [(False, "off"), (True, "on")])
def test_a_throwaway_cluster_skips_the_flush_unless_asked(durable: bool, fsync: str) -> None:
    with postgres_server(durable=durable) as server:
        assert settings(server) == (fsync, "on")
