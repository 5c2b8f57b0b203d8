"""Run the benchmarks: `python -m bench` (all), `python -m bench watch`, `--quick` for small sizes."""

from __future__ import annotations

import argparse
import sys

from bench import simulators, watch

BENCHMARKS = {"simulators": simulators.run, "watch": watch.run}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="which benchmarks (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI: checks that nothing rots")
    args = parser.parse_args()
    for name in args.names or list(BENCHMARKS):
        BENCHMARKS[name](quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
