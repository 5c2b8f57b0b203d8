"""A judge's query of one case, now: every registry asked about the case's debtors, the answers recorded,
the case controlled (unless the judge said not to), and the run finished with what came of it.

Who may ask, and the judge's overrides, are checked when the run starts (`querying.start_case_query`); a
dry run is `control.dry_run_case` (nothing stays, not even its run). The flow passes its Prefect tasks as
`ask` and `control_cases`; tests pass the plain use cases (the default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from clerk import querying, sweeping
from clerk.context import Context

#: Ask one registry (by code) about the case's debtors and record the answer.
AskOne = Callable[[str], Awaitable[querying.BatchResult]]


async def query_case(
    ctx: Context,
    started: querying.CaseQuery,
    ask: AskOne | None = None,
    control_cases: sweeping.Control | None = None,
) -> sweeping.Swept:
    """Ask every registry of the context at once, control the case with `control_cases` (none: only look),
    and finish the run: completed when some registry answered, else failed."""

    async def ask_plainly(code: str) -> querying.BatchResult:
        return await querying.query_batch(ctx, code, started.run_id, started.debtor_ids)

    asking = ask or ask_plainly
    batches = await asyncio.gather(*(asking(code) for code in ctx.registries))
    swept = sweeping.Swept(debtors=len(started.debtor_ids), tally=querying.Tally.of(batches))
    if control_cases is not None:
        swept.control = await control_cases([started.case_id])
    await sweeping.finish(ctx, started.run_id, swept)
    return swept
