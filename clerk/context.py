"""What every use case is given first: the database, the registries, the policy, who acts and the clock.

A flow run builds one (`flows.runtime.opened`), as do the tests (`tests.fakes`, `tests.world`) and the
benchmarks; a use case reads what it needs from it instead of a row of loose arguments. It holds no personal
data: it is never a task's argument or result (tasks reach it through `flows.runtime.current`, a
`ContextVar`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from clerk.settings import Settings
from clerk.store import audit
from connectors.base import RegistryPort
from models.policy import Policy
from models.supervision import CHINA, bureau_today
from models.tables import utcnow


@dataclass(frozen=True, slots=True)
class Registry:
    """One registry as the use cases reach it: its port, its row's id in the case book and how many
    debtors one request asks about."""

    code: str
    port: RegistryPort
    id: int
    batch_size: int


@dataclass(frozen=True)
class Context:
    """The sessions, the registries by code, the policy, the actor and the clock of one run."""

    sessions: sessionmaker[Session]
    registries: Mapping[str, Registry] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    actor: str = audit.Actor.SYSTEM
    #: The court's case account (一案一账户) that deductions are paid into.
    court_account: str = ""
    clock: Callable[[], dt.datetime] = utcnow

    @classmethod
    def of(
        cls,
        settings: Settings,
        sessions: sessionmaker[Session],
        ports: Mapping[str, RegistryPort],
        ids: Mapping[str, int],
        actor: str,
    ) -> Context:
        """The context the settings describe for these ports (some of the settings' registries) and their
        rows' ids."""
        sizes = {c.code: c.batch_size for c in settings.registries}
        return cls(sessions, registries(ports, ids, sizes), settings.policy(), actor, settings.court_account)

    def now(self) -> dt.datetime:
        return self.clock()

    def today(self) -> dt.date:
        """The day in the bureau's time zone (what is owed is computed per calendar day in China)."""
        return bureau_today(self.clock())

    @cached_property
    def ports(self) -> dict[str, RegistryPort]:
        return {code: r.port for code, r in self.registries.items()}

    @cached_property
    def registry_ids(self) -> dict[str, int]:
        return {code: r.id for code, r in self.registries.items()}

    def at(self, moment: dt.datetime) -> Context:
        """This context with its clock stopped at `moment` (simulated days, tests, benchmarks)."""
        return replace(self, clock=lambda: moment)

    def on(self, day: dt.date) -> Context:
        """This context with its clock stopped at noon of `day` in the bureau's time zone."""
        return self.at(dt.datetime.combine(day, dt.time(12), tzinfo=CHINA))

    def acting(self, actor: str) -> Context:
        return replace(self, actor=actor)


def registries(
    ports: Mapping[str, RegistryPort], ids: Mapping[str, int], batch_sizes: Mapping[str, int] | int
) -> dict[str, Registry]:
    """The registries of `ports` with their ids and batch sizes (one size for all, or by code)."""
    return {
        code: Registry(
            code, port, ids[code], batch_sizes if isinstance(batch_sizes, int) else batch_sizes[code]
        )
        for code, port in ports.items()
    }
