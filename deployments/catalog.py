"""Every deployment of query-clerk, once: what `clerk serve` serves on one machine, what `prefect.yaml`
deploys on a process work pool, and what `clerk run` runs. The schedules are settings (`clerk.settings`:
`sweep_cron`, `collect_cron`, …), so a bureau changes them in one place.

`prefect.yaml` is generated from this (`python -m deployments.catalog --write`); the tests fail when the
committed file and the catalog differ.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clerk.settings import Settings

TIMEZONE = "Asia/Shanghai"
POOL = "clerk-process"
PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    entrypoint: str  # "flows/<module>.py:<flow function>"
    description: str
    serve_cron: str | None = None  # the settings field with its schedule when `clerk serve` serves it
    pool_cron: str | None = None  # … and on the work pool (prefect.yaml)
    served: bool = True  # by `clerk serve`
    concurrency_limit: int | None = None  # on the pool
    parameters: dict[str, Any] = field(default_factory=dict)  # on the pool
    note: str = ""  # a comment above it in prefect.yaml
    tags: tuple[str, ...] = ()  # in the UI: `judge` (what a judge starts), `schedule`, `lifecycle`, `audit`

    def flow(self) -> Any:
        """The flow object its entrypoint names (imported now)."""
        path, _, function = self.entrypoint.partition(":")
        return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), function)


DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment(
        "province-sweep",
        "flows/province.py:province_sweep",
        "Sweep every due debtor as shards run on the pool's workers; take over failed shards; one report.",
        pool_cron="sweep_cron",
        served=False,
        concurrency_limit=1,
        parameters={"shards": 4, "auto_control": True},
        note="The pool's sweep: the province-sweep run splits the due debtors into shards, one sweep-shard "
        "run each on whichever worker takes it, within the registries' global rate limits (`clerk setup` "
        "creates them).",
        tags=("schedule",),
    ),
    Deployment(
        "sweep-shard",
        "flows/sweep.py:sweep",
        "One shard of the province sweep (started by province-sweep; no schedule of its own).",
        served=False,
        tags=("schedule",),
    ),
    Deployment(
        "sweep",
        "flows/sweep.py:sweep",
        "Query every due debtor at every registry, record each hit once, freeze and seize within the cap.",
        serve_cron="sweep_cron",
        concurrency_limit=1,
        parameters={"auto_control": True},
        note="The whole sweep in one run, as `clerk serve` schedules it on one machine: on demand only here, "
        "so that it never runs beside the province sweep.",
        tags=("schedule",),
    ),
    Deployment(
        "collect",
        "flows/collect.py:collect",
        "Collect answers registries gave later; resolve unconfirmed measures by their keys.",
        serve_cron="collect_cron",
        pool_cron="collect_cron",
        concurrency_limit=1,
        tags=("schedule",),
    ),
    Deployment(
        "case-query",
        "flows/case_query.py:case_query",
        "A judge's query of one case, now (Run: the case number and your name): every registry asked, "
        "what is found frozen and seized within what the case owes, the case sheet as the run's artifact.",
        tags=("judge",),
    ),
    Deployment(
        "watch",
        "flows/watch.py:watch",
        "Freeze new deposits of cases not yet covered (push feeds and polling); each run watches ~15 min.",
        serve_cron="watch_cron",
        pool_cron="watch_cron",
        concurrency_limit=2,
        note="Runs overlap by a few seconds, so that no moment goes unwatched (hence 2 at once).",
        tags=("schedule",),
    ),
    Deployment(
        "renewal",
        "flows/renewal.py:renewal",
        "Renew measures before they lapse, with their original references; alert those that lapsed.",
        serve_cron="renewal_cron",
        pool_cron="renewal_cron",
        concurrency_limit=1,
        tags=("lifecycle", "schedule"),
    ),
    Deployment(
        "release",
        "flows/release.py:release",
        "Release all measures of ended cases and any excess over what a case owes today.",
        serve_cron="release_cron",
        pool_cron="release_cron",
        concurrency_limit=1,
        tags=("lifecycle", "schedule"),
    ),
    Deployment(
        "deadlines",
        "flows/deadlines.py:deadlines",
        "Triage; node-deadline warnings and alerts (Prefect events) and notices to judges.",
        serve_cron="deadlines_cron",
        pool_cron="deadlines_cron",
        concurrency_limit=1,
        tags=("lifecycle", "schedule"),
    ),
    Deployment(
        "daily-report",
        "flows/daily_report.py:daily_report",
        "Per court and judge, yesterday's work, as artifacts and a CSV file.",
        serve_cron="report_cron",
        pool_cron="report_cron",
        tags=("schedule",),
    ),
    Deployment(
        "audit-sequencer",
        "flows/sequencer.py:audit_sequencer",
        "Place the audit events written since the last run in the log, grow its Merkle tree, sign its head.",
        serve_cron="sequencer_cron",
        pool_cron="sequencer_cron",
        concurrency_limit=1,
        note="Writers append audit events with no lock; this one deployment gives them their places and "
        "signs the tree head with the court's key (CLERK_AUDIT_KEY_FILE on the worker that runs it).",
        tags=("audit", "schedule"),
    ),
    Deployment(
        "money-statement",
        "flows/money.py:money_statement",
        "Case money: open new cases' sub-accounts at the court's bank, read its statement, place each line "
        "once (a deduction, a debtor's transfer, or unidentified money for a person).",
        serve_cron="money_cron",
        pool_cron="money_cron",
        concurrency_limit=1,
        tags=("money", "schedule"),
    ),
    Deployment(
        "money-reconcile",
        "flows/money.py:money_reconcile",
        "Case money: every account at the court's bank against the journal, to the fen; differences and "
        "old unidentified money for a person.",
        serve_cron="reconcile_cron",
        pool_cron="reconcile_cron",
        concurrency_limit=1,
        tags=("money", "schedule"),
    ),
    Deployment(
        "deduction",
        "flows/deduction.py:deduction",
        "Move a case's frozen deposits to the court's case account: proposes an amount, pauses for the "
        "judge's decision (the Resume button), then says what moved (the deduction-result artifact).",
        tags=("judge", "lifecycle"),
    ),
)

BY_NAME = {d.name: d for d in DEPLOYMENTS}
#: What `clerk serve` serves, in order.
SERVED = tuple(d for d in DEPLOYMENTS if d.served)
#: The flows that run on `clerk serve`'s schedules (what `clerk run NAME` runs once).
SCHEDULED = tuple(d.name for d in SERVED if d.serve_cron)


_HEADER = """\
# GENERATED from deployments/catalog.py by `python -m deployments.catalog --write`: edit the catalog (or
# the *_cron settings), not this file; the tests fail when the two differ.
#
# Deployments of query-clerk for a Prefect server and a process work pool (production shape).
# On one machine, `clerk serve` serves the same flows without a work pool (deployments/embedded.py).
#
#   clerk setup                          # the work pool, the registries' global rate limits, the zombie-run
#                                        # automation, then `prefect deploy --all` (PREFECT_API_URL set)
#   prefect worker start --pool clerk-process   # with CLERK_GLOBAL_LIMITS=true, on as many machines as needed
#
# `clerk up` does all of it on one machine (PostgreSQL, the server, N workers); see the README.
#
# Schedules are in Asia/Shanghai time; every schedule has a slug so that redeploying keeps its identity
# (see PrefectHQ/prefect#18894). `clerk serve` uses the same slugs: the server refuses to update a
# deployment's schedules without them. The worker needs the same CLERK_* settings (database, registries) as
# any other clerk process.
name: query-clerk
prefect-version: {prefect}

build: null
push: null

# Where the worker finds the code: set explicitly, or `prefect deploy` would record the deploying
# machine's working directory (PrefectHQ/prefect#22489).
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $QUERY_CLERK_HOME }}}}"

definitions:
  work_pool: &pool
    name: {pool}
    work_queue_name: default

deployments:
"""


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _comment(text: str, width: int = 108) -> list[str]:
    lines, line = [], "  #"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "  #"
        line += " " + word
    return [*lines, line]


def prefect_yaml(settings: Settings, prefect_version: str = "3.8.8") -> str:
    """prefect.yaml for the work pool, from the catalog and the settings' schedules."""
    out = [_HEADER.format(prefect=prefect_version, pool=POOL).rstrip("\n")]
    for d in DEPLOYMENTS:
        block = [""] + (_comment(d.note) if d.note else [])
        block += [
            f"  - name: {d.name}",
            f"    entrypoint: {d.entrypoint}",
            f"    description: {_quoted(d.description)}",
            "    work_pool: *pool",
        ]
        if d.tags:
            block.append(f"    tags: [{', '.join(d.tags)}]")
        if d.concurrency_limit is not None:
            block.append(f"    concurrency_limit: {d.concurrency_limit}")
        if d.pool_cron:
            block += [
                "    schedules:",
                f"      - cron: {_quoted(getattr(settings, d.pool_cron))}",
                f"        timezone: {TIMEZONE}",
                f"        slug: {d.name}",
            ]
        if d.parameters:
            block.append("    parameters:")
            block += [f"      {key}: {json.dumps(value)}" for key, value in d.parameters.items()]
        out += block
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="prefect.yaml from the deployment catalog.")
    parser.add_argument("--write", action="store_true", help="write prefect.yaml (default: print it)")
    parser.add_argument("--check", action="store_true", help="exit 1 when prefect.yaml differs")
    args = parser.parse_args(argv)
    text = prefect_yaml(Settings())
    if args.check:
        same = PREFECT_YAML.read_text(encoding="utf-8") == text
        print("prefect.yaml matches the catalog" if same else "prefect.yaml differs: run --write")
        return 0 if same else 1
    if args.write:
        PREFECT_YAML.write_text(text, encoding="utf-8")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
