"""Serve every simulated registry named in the settings, each on its own port on loopback, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from connectors.base import RegistryKind
from connectors.config import SIM_CREDENTIAL, RegistryConfig
from connectors.simulator.bank import BankSimulator
from connectors.simulator.base import RegistrySimulator
from connectors.simulator.court_bank import CourtBankSimulator
from connectors.simulator.faults import FaultPlan
from connectors.simulator.property import PropertySimulator
from connectors.simulator.sms import SmsGatewaySimulator
from connectors.simulator.vehicle import VehicleSimulator
from connectors.simulator.world import SimDebtor, make_debtors, populate
from models.supervision import bureau_today

SIMULATORS: dict[RegistryKind, type[RegistrySimulator]] = {
    RegistryKind.BANK: BankSimulator,
    RegistryKind.REAL_ESTATE: PropertySimulator,
    RegistryKind.VEHICLE: VehicleSimulator,
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class SimulatorError(Exception):
    pass


#: Ports handed out below the kernel's ephemeral range (Linux: 32768-60999). A port taken from that range
#: and let go until a simulator starts could be handed, meanwhile, to any server another process binds to
#: port 0; CI lost `test_sim_cli` to that once ("address already in use").
_BELOW_EPHEMERAL = range(20_000, 32_768)


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (for tests and benchmarks that start simulators),
    chosen at random outside the ephemeral range (`_BELOW_EPHEMERAL` says why)."""
    pick = random.SystemRandom()
    chosen: list[int] = []
    for _ in range(100 * count):
        port = pick.choice(_BELOW_EPHEMERAL)
        if port in chosen:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise OSError(f"no {count} free ports on 127.0.0.1 between 20000 and 32767")


@dataclass
class SimulatedWorld:
    simulators: list[tuple[RegistrySimulator, str, int]]  # (simulator, host, port)
    configs: list[RegistryConfig]
    debtors: list[SimDebtor]
    holdings: dict[str, int]
    seconds: float
    sms: SmsGatewaySimulator = field(default_factory=lambda: SmsGatewaySimulator(SIM_CREDENTIAL))
    sms_at: tuple[str, int] | None = None  # where `serve` serves the SMS gateway
    sms_url: str | None = None  # where `world_in_background` served it
    court_bank: CourtBankSimulator = field(
        default_factory=lambda: CourtBankSimulator("court-bank", SIM_CREDENTIAL)
    )
    court_bank_at: tuple[str, int] | None = None  # where `serve` serves the court's bank
    court_bank_url: str | None = None  # where `world_in_background` served it

    def __post_init__(self) -> None:
        """Deductions at every simulated bank are paid into the simulated court's bank."""
        for simulator, _, _ in self.simulators:
            simulator.ledger.clearing = self.court_bank.receive


def build_world(
    configs: Sequence[RegistryConfig],
    debtors: int,
    seed: int,
    now: dt.datetime,
    faults: FaultPlan | None = None,
    sms_url: str | None = None,
    court_bank_url: str | None = None,
) -> SimulatedWorld:
    """A simulator for every registry whose URL is on loopback, holding a seeded world of `debtors`; each
    injects `faults`, from a generator seeded apart. With `sms_url` (`court_bank_url`) on loopback, `serve`
    serves a simulated SMS gateway (the court's bank) there too."""
    started = time.perf_counter()
    sims: list[tuple[RegistrySimulator, str, int]] = []
    for config in configs:
        url = urlsplit(config.base_url)
        if url.hostname not in LOOPBACK:
            raise SimulatorError(
                f"registry {config.code}: {config.base_url} is not on loopback; "
                "simulators serve 127.0.0.1 only"
            )
        if url.scheme != "http" or url.port is None:
            raise SimulatorError(f"registry {config.code}: a simulator needs http://127.0.0.1:PORT")
        plan = None if faults is None else dataclasses.replace(faults, seed=faults.seed + len(sims))
        secret = config.credential.get_secret_value()
        simulator = SIMULATORS[config.kind](config.code, secret, today=bureau_today(now), faults=plan)
        sims.append((simulator, url.hostname, url.port))
    people = make_debtors(random.Random(seed), debtors)
    holdings = populate([s for s, _, _ in sims], people, seed, now)
    world = SimulatedWorld(sims, list(configs), people, holdings, time.perf_counter() - started)
    world.court_bank.ledger.today = bureau_today(now)
    for service, attribute in ((sms_url, "sms_at"), (court_bank_url, "court_bank_at")):
        url = urlsplit(service or "")
        if url.hostname in LOOPBACK and url.port is not None:
            setattr(world, attribute, (url.hostname, url.port))
    return world


@contextlib.contextmanager
def serving_in_background(app: Any, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Serve one ASGI app on a free loopback port in a daemon thread; yields its base URL. With `tls`
    (certificate and key files) it serves HTTPS."""
    port = free_loopback_ports(1)[0]
    cert, key = tls if tls else (None, None)
    server = _Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
    )
    thread = threading.Thread(target=server.run, name=f"simulator-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SimulatorError(f"a simulator could not start on 127.0.0.1:{port}")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def world_in_background(world: SimulatedWorld) -> Iterator[list[RegistryConfig]]:
    """Serve every simulator of `world` in the background; yields registry settings that point at them."""
    with contextlib.ExitStack() as stack:
        configs = []
        for simulator, config in zip((s for s, _, _ in world.simulators), world.configs, strict=True):
            url = stack.enter_context(serving_in_background(simulator.app))
            configs.append(config.model_copy(update={"base_url": url}))
        world.sms_url = stack.enter_context(serving_in_background(world.sms.app))
        world.court_bank_url = stack.enter_context(serving_in_background(world.court_bank.app))
        yield configs


class _Server(uvicorn.Server):
    """One of several servers in a process: signals are handled once, for all of them, by `serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(world: SimulatedWorld, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop every server cleanly."""
    apps = [(sim.app, host, port) for sim, host, port in world.simulators]
    if world.sms_at is not None:
        apps.append((world.sms.app, *world.sms_at))
    if world.court_bank_at is not None:
        apps.append((world.court_bank.app, *world.court_bank_at))
    servers = [
        _Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
        )
        for app, host, port in apps
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    ticker = asyncio.create_task(_tick([*(sim for sim, _, _ in world.simulators), world.court_bank]))  # noqa: RUF006 - held here, cancelled in finally
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                stop()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise SimulatorError("a simulator could not start: is its port already in use?")
            await asyncio.sleep(0.05)
        if on_ready:
            on_ready()
        await asyncio.gather(*tasks)
    finally:
        ticker.cancel()


async def _tick(simulators: list[RegistrySimulator], every_s: float = 1.0) -> None:
    """Move every simulator's clock with the wall clock: scheduled deposits land, others' measures lapse."""
    while True:
        now = dt.datetime.now(dt.UTC)
        for simulator in simulators:
            async with simulator.lock:
                simulator.ledger.advance(now)
        await asyncio.sleep(every_s)
