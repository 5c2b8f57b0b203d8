"""Run the benchmarks: `python -m bench` (all), `python -m bench sweep latency`, `--quick` for small sizes
(what CI runs, so that none rots). Figures are printed as tables and appended to bench/results/results.jsonl;
bench/README.md says what each measures and what we found."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bench import (
    audit,
    busy,
    convoy,
    decision,
    latency,
    money,
    prefect_cost,
    simulators,
    sweep,
    transport,
    watch,
    watch_scale,
    workers,
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI: checks that nothing rots")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n.replace("_", "")) for n in text.split(",")],
        help="debtors for `scale`, comma-separated (default 10000,100000,1000000; quick 500,1000); cases and "
        "statement lines for `money` (default 100000; quick 500); cases for `index` (default 1000000; "
        "quick 2000); watched accounts for `watch --scale` (default 200000; quick 3000)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="`watch` at a province's scale: watched accounts across three banks with their rate limits, "
        "deposits at `--rate` a second for `--minutes`, push feeds and polling (issue 43)",
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="`watch --scale`: deposits a second (default 20)"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="`watch --scale`: minutes of deposits per mode (default 10)",
    )
    parser.add_argument(
        "--bank-limit",
        type=float,
        default=20.0,
        help="`watch --scale`: requests a second each bank allows (default 20; the clerk is set to the same)",
    )
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="case book for `scale` (default both; PostgreSQL is a throwaway server)",
    )
    parser.add_argument(
        "--first-sweep-only",
        action="store_true",
        help="`scale` without the re-sweep and the second plain-client run (their columns read -): "
        "a 1,000,000-debtor first sweep alone takes over an hour here",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="N",
        help="`scale`: sweep with N processes side by side, one shard each, as a province's sweep runs on a "
        "pool of N workers (default 1; 2 uses both cores of these machines)",
    )
    parser.add_argument(
        "--flow",
        action="store_true",
        help="`scale`: the sweep as the Prefect flow runs it (against a Prefect server started for it), "
        "beside the reference sweep; a first sweep only",
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="`scale` without the reference sweep and its twin world (its columns read -): at 1,000,000 "
        "the two would double the time",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        choices=range(1, 10),
        metavar="N",
        help="`scale`: measure each size and database N times in fresh worlds, alternating which sweep runs "
        "first, and print the median reference ratio (default 1; 3 at 20,000, where one run moves by ±0.15)",
    )
    benchmarks: dict[str, Callable[[argparse.Namespace], object]] = {
        "simulators": lambda a: simulators.run(quick=a.quick),
        "transport": lambda a: transport.run(quick=a.quick),
        "sweep": lambda a: sweep.run(quick=a.quick),
        "scale": lambda a: sweep.scale(
            quick=a.quick,
            sizes=a.sizes,
            databases=("sqlite", "postgresql") if a.database == "both" else (a.database,),
            resweep=not a.first_sweep_only,
            shards=a.shards,
            flow=a.flow,
            with_reference=not a.no_reference,
            rounds=a.rounds,
        ),
        "prefect": lambda a: prefect_cost.run(quick=a.quick),
        "latency": lambda a: latency.run(quick=a.quick),
        "busy": lambda a: busy.run(quick=a.quick),
        "watch": lambda a: (
            watch_scale.run(
                accounts=a.sizes[0] if a.sizes else 200_000,
                rate=a.rate,
                seconds=a.minutes * 60,
                requests_per_second=a.bank_limit,
                quick=a.quick,
            )
            if a.scale
            else watch.run(quick=a.quick)
        ),
        "workers": lambda a: workers.run(quick=a.quick),
        "audit": lambda a: audit.run(quick=a.quick),
        "index": lambda a: audit.index(
            quick=a.quick,
            sizes=a.sizes,
            databases=("sqlite", "postgresql") if a.database == "both" else (a.database,),
        ),
        "convoy": lambda a: convoy.run(quick=a.quick),
        "money": lambda a: money.run(quick=a.quick, sizes=a.sizes),
        "decision": lambda a: decision.run(quick=a.quick),
    }
    parser.add_argument(
        "names", nargs="*", choices=[*benchmarks, []], help=f"which (default: all): {', '.join(benchmarks)}"
    )
    args = parser.parse_args()
    for name in args.names or list(benchmarks):
        benchmarks[name](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
