"""`clerk up` / `clerk down` / `clerk status`: the production shape on one machine, for trying it.

    PostgreSQL (Debian's)  ── databases `clerk` (the case book) and `prefect` (the Prefect server's)
    Prefect server + UI    ── 127.0.0.1, on PostgreSQL, basic auth with a generated password
    work pool clerk-process, global rate limits, zombie-run automation, deployments (`clerk setup`)
    N process workers      ── each runs flow runs (sweep shards, case queries, …) in processes of its own

Everything lives under `<data dir>/up/`: the PostgreSQL cluster, Prefect's home, the logs, and `state.json`
(mode 0600: it holds the password) naming every process, which `clerk down` stops. Every process listens on
127.0.0.1 only. The README explains the same shape spread over several machines.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from unittest import mock

from clerk.settings import Settings
from clerk.store import db
from connectors.config import registries_json
from deployments import setup
from deployments.embedded import LOOPBACK, SERVER_ENTRY, listen_refusal, local_url, prefect_healthy
from deployments.pgserver import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
USER = "clerk"  # the Prefect server's basic-auth user


@dataclass
class Shape:
    home: str
    pg_port: int
    prefect_port: int
    database_url: str
    api_url: str
    auth: str  # "user:password" of the Prefect server's basic auth
    pids: dict[str, int] = field(default_factory=dict)  # name -> pid (process group leader)

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def client_env(self) -> dict[str, str]:
        """What a Prefect client (CLI, worker, flow run) of this shape needs."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_API_AUTH_STRING": self.auth}


def home_of(conf: Settings) -> Path:
    return conf.data_dir / "up"


def _state_file(home: Path) -> Path:
    return home / "state.json"


def load(home: Path) -> Shape | None:
    path = _state_file(home)
    return Shape(**json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None


def _save(shape: Shape) -> None:
    path = _state_file(Path(shape.home))
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(asdict(shape), indent=2), encoding="utf-8")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return fields is not None and fields[0] != "Z"


def _stat(stat: Path) -> list[str] | None:
    """A process's /proc stat fields after its name (state, ppid, pgrp, …); None once it is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def healthy(shape: Shape) -> bool:
    return prefect_healthy(shape.api_url, shape.auth)


def _start(name: str, args: list[str], env: dict[str, str], home: Path) -> int:
    """A process in a session of its own (so that `clerk down` stops it with all its children), logging to
    logs/<name>.log."""
    log = (home / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    return process.pid


def _wait(check: Callable[[], bool], seconds: float, what: str, pid: int, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if not alive(pid):
            raise setup.SetupError(
                f"{what} stopped; its log ends:\n{log.read_text(errors='replace')[-2000:]}"
            )
        if time.monotonic() > deadline:
            raise setup.SetupError(f"{what} did not come up within {seconds:.0f} s; see {log}")
        time.sleep(0.5)


def up(
    conf: Settings,
    workers: int,
    say: Callable[[str], None],
    *,
    pg_port: int = 54329,
    prefect_port: int | None = None,
    schedules: bool = True,
    host: str = LOOPBACK,
) -> Shape:
    """Start PostgreSQL, the Prefect server (on `host`: beyond this machine only with its basic auth, which
    `up` always sets), the setup and `workers` workers; returns the running shape."""
    home = home_of(conf)
    running = load(home)
    if running and any(alive(pid) for pid in running.pids.values()):
        raise setup.SetupError(f"already up (processes {sorted(running.pids)}): `clerk down` first")
    (home / "logs").mkdir(parents=True, exist_ok=True)
    try:
        pg = PostgresServer.at(home / "pg", pg_port)
    except RuntimeError as exc:
        raise setup.SetupError(str(exc)) from None
    say(f"PostgreSQL on 127.0.0.1:{pg_port} ({pg.datadir})…")
    if not pg.running():
        pg.start()
    pg.wait_ready()
    for name in ("clerk", "prefect"):
        if not pg.has_database(name):
            pg.create_database(name)
    port = prefect_port or conf.prefect_port
    shape = Shape(
        home=str(home),
        pg_port=pg_port,
        prefect_port=port,
        database_url=pg.url("clerk"),
        api_url=local_url(host, port),
        auth=running.auth if running else f"{USER}:{secrets.token_urlsafe(18)}",
    )
    refusal = listen_refusal(host, shape.auth)
    if refusal:
        raise setup.SetupError(f"--host: {refusal}")
    _save(shape)
    try:
        db.engine_for(shape.database_url)  # the case book's schema, migrated
        server_env = dict(os.environ) | {
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", driver="asyncpg"),
            "PREFECT_SERVER_API_AUTH_STRING": shape.auth,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": shape.api_url,
        }
        say(f"Prefect server on {host}:{port} (PostgreSQL database `prefect`; about 20 s)…")
        shape.pids["server"] = _start(
            "server",
            [sys.executable, "-m", *SERVER_ENTRY, "--host", host, "--port", str(port)],
            server_env,
            home,
        )
        _save(shape)
        _wait(
            lambda: healthy(shape), 180, "the Prefect server", shape.pids["server"], home / "logs/server.log"
        )
        client_env = worker_env(conf, shape)
        with mock.patch.dict(os.environ, client_env):
            setup.setup(conf.registries, say, schedules=schedules)
        for i in range(1, workers + 1):
            name = f"worker-{i}"
            shape.pids[name] = _start(
                name,
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "worker",
                    "start",
                    "--pool",
                    setup.POOL,
                    "--name",
                    f"clerk-{name}",
                    "--type",
                    "process",
                ],
                client_env,
                home,
            )
            _save(shape)
        say(f"{workers} workers started (logs in {home / 'logs'})")
    except BaseException:
        say("could not come up: stopping what started")
        down(conf, say)
        raise
    return shape


def worker_env(conf: Settings, shape: Shape) -> dict[str, str]:
    """A worker's environment: the clerk's settings on the shape's database, the registries' global limits
    on, heartbeats for the zombie-run automation, and this checkout as the code's home (prefect.yaml)."""
    return (
        dict(os.environ)
        | shape.client_env()
        | {
            "CLERK_DATABASE_URL": shape.database_url,
            "CLERK_REGISTRIES": registries_json(conf.registries),
            "CLERK_GLOBAL_LIMITS": "true",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(setup.HEARTBEAT_S),
            "PREFECT_WORKER_QUERY_SECONDS": f"{max(1, round(conf.runner_poll_s))}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "QUERY_CLERK_HOME": str(ROOT),
        }
    )


def down(conf: Settings, say: Callable[[str], None], timeout_s: float = 30) -> list[str]:
    """Stop the workers (all at once), then the server, then PostgreSQL; returns what was stopped."""
    home = home_of(conf)
    shape = load(home)
    if shape is None:
        say("nothing is up here")
        return []
    workers = {name: pid for name, pid in shape.pids.items() if name != "server"}
    server = {name: pid for name, pid in shape.pids.items() if name == "server"}
    stopped = stop_groups(workers, timeout_s, say) + stop_groups(server, timeout_s, say)
    pg = PostgresServer.at(home / "pg", shape.pg_port, create=False)  # stopping never makes a cluster
    if pg.running():
        pg.stop("fast")
        stopped.append("postgresql")
        say("stopped PostgreSQL (its data stays in " + str(pg.datadir) + ")")
    shape.pids = {}
    _save(shape)
    return stopped


#: How long a process whose children have all ended may take to end itself before it is killed.
SETTLE_S = 3.0


def stop_groups(groups: dict[str, int], timeout_s: float, say: Callable[[str], None]) -> list[str]:
    """SIGTERM the process groups led by `groups`' pids, all at once. Each ends by itself, or is killed
    (with its group) `SETTLE_S` after its last child ended, or after `timeout_s`. A Prefect 3.8 worker
    forwards SIGTERM to itself as SIGINT and then does not stop even when idle: it waits here only for the
    flow runs it started."""
    running = {name: pid for name, pid in groups.items() if alive(pid)}
    for pid in running.values():
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    childless_since: dict[str, float] = {}
    left = dict(running)
    while left:
        now = time.monotonic()
        for name, pid in list(left.items()):
            if not alive(pid):
                say(f"stopped {name}")
            elif now >= deadline:
                os.killpg(pid, signal.SIGKILL)
                say(f"stopped {name} (killed: still running after {timeout_s:.0f} s)")
            elif _children(pid):
                childless_since.pop(name, None)
                continue
            elif now - childless_since.setdefault(name, now) >= SETTLE_S:
                os.killpg(pid, signal.SIGKILL)
                say(f"stopped {name} (killed: its runs had ended, it had not)")
            else:
                continue
            del left[name]
        time.sleep(0.2)
    return list(running)


def _children(pid: int) -> set[int]:
    """The pids of `pid`'s live child processes (from /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(stat)  # None: it ended while we looked
        if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def status(conf: Settings) -> tuple[Shape | None, dict[str, bool]]:
    """The shape last brought up here and whether each of its processes is alive (and the server healthy)."""
    shape = load(home_of(conf))
    if shape is None:
        return None, {}
    states = {name: alive(pid) for name, pid in shape.pids.items()}
    if "server" in states:
        states["server"] = states["server"] and healthy(shape)
    return shape, states
