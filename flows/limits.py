"""The registries' rates shared by every worker: one Prefect global concurrency limit with slot decay (a rate
limit) per registry, named `registry-<code>`, with `requests_per_second` slots decaying each second.

`clerk setup` creates them (deployments/setup.py); with CLERK_GLOBAL_LIMITS on, every request takes a slot
first (`gate`). Prefect would run on, unthrottled, with a warning only, if a named limit were missing: the
gate asks strictly, so a missing limit stops the request with an error naming the limit and the fix.
"""

from __future__ import annotations

from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, rate_limit

from connectors.config import RegistryConfig
from connectors.http import Gate


class MissingLimit(RuntimeError):
    pass


def limit_name(code: str) -> str:
    return f"registry-{code}"


def limit_of(config: RegistryConfig) -> tuple[int, float] | None:
    """(slots, decay per second) of the registry's limit, or None for a registry without a rate limit."""
    rate = config.requests_per_second
    if rate <= 0:
        return None
    return max(1, round(rate)), rate


def gate_for(configs: list[RegistryConfig]) -> Gate:
    """The gate of these registries: those with a rate wait for a slot of their limit, the others pass."""
    limited = {c.code for c in configs if limit_of(c) is not None}

    async def gate(code: str) -> None:
        if code in limited:
            await take_slot(code)

    return gate


async def take_slot(code: str) -> None:
    """Wait for a slot of the registry's global rate limit (one request's worth)."""
    try:
        await rate_limit(limit_name(code), strict=True)
    except ConcurrencySlotAcquisitionError as exc:
        raise MissingLimit(
            f"the Prefect global rate limit {limit_name(code)!r} is missing: run `clerk setup` against "
            f"this Prefect server, or set CLERK_GLOBAL_LIMITS=false on a single machine ({exc})"
        ) from exc
