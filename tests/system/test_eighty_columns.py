"""The README's commands as a newcomer types them, at an 80-column terminal (issue 42, items 3 and 6): no line
wider than the terminal (Rich wraps between words and fits tables; a terminal left to wrap splits amounts and
words), and the demo, run twice with one seed, prints the same figures. SQLite, the embedded default."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from bench.common import serving
from connectors.config import registries_json, simulated_registries
from connectors.simulator.serve import free_loopback_ports
from tests.terminal import on_a_terminal, too_wide

ROOT = Path(__file__).resolve().parents[2]
DEBTORS = "120"


def _env(folder: Path) -> dict[str, str]:
    """This test's settings: its own database and data, and free loopback ports for `clerk sim` (the demo
    picks its own), so that another test's simulators or `clerk serve` are never the ones asked."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLERK_", "PREFECT_"))}
    configs = simulated_registries()
    *ports, bank, sms, prefect = free_loopback_ports(len(configs) + 3)
    moved = [
        c.model_copy(update={"base_url": f"http://127.0.0.1:{p}"})
        for c, p in zip(configs, ports, strict=True)
    ]
    return clean | {
        "CLERK_DATA_DIR": str(folder / "var"),
        "CLERK_DATABASE_URL": f"sqlite:///{folder}/clerk.db",
        "CLERK_REGISTRIES": registries_json(moved),
        "CLERK_COURT_BANK_URL": f"http://127.0.0.1:{bank}",
        "CLERK_NOTIFIER_URL": f"http://127.0.0.1:{sms}",
        "CLERK_PREFECT_PORT": str(prefect),  # no `clerk serve` of this machine's
        "PREFECT_HOME": str(folder / "prefect"),
    }


def _figures(shown: str) -> list[str]:
    """The demo's figures: its table rows and summary lines; not progress (…), timings, paths or hashes."""
    kept: list[str] = []
    lines = shown.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("simulators:")]
    for line in lines[starts[0] if starts else 0 :]:  # the database's path, wrapped anywhere, before it
        if "…" in line or re.search(
            r"demo done in|database:|signed head|sqlite:|/tmp/|[0-9a-f]{40}|\d+\.\d s|━|\d:\d\d:\d\d", line
        ):
            continue
        if re.search(r"\d", line):
            kept.append(" ".join(line.split()))
    return kept


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("eighty")
    code, shown = on_a_terminal(
        [sys.executable, "-m", "cli", "demo", "--debtors", DEBTORS], _env(folder), ROOT
    )
    assert code == 0, shown[-3000:]
    return folder, shown


def test_the_demo_fits_80_columns_and_prints_the_same_figures_twice(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    _, shown = demo
    assert too_wide(shown) == [], shown[-3000:]
    code, again = on_a_terminal(
        [sys.executable, "-m", "cli", "demo", "--debtors", DEBTORS], _env(tmp_path), ROOT
    )
    assert code == 0, again[-3000:]
    first, second = _figures(shown), _figures(again)
    assert any("hits (assets found)" in line for line in first), first
    assert first == second


def test_every_readme_command_fits_80_columns(demo: tuple[Path, str]) -> None:
    folder, shown = demo
    env = _env(folder)
    example = re.search(r"`clerk query '([^']+)' --requested-by (\S+) --dry-run`", " ".join(shown.split()))
    paid = re.search(r"`clerk money show '([^']+)'`", " ".join(shown.split()))
    assert example and paid, shown[-2000:]
    case, judge = example[1], example[2]
    commands = [
        ["cases", "list"],
        ["cases", "show", case],
        ["money", "show", paid[1]],
        ["money", "unidentified"],
        ["report", "daily"],
        ["audit", "verify"],
        ["audit", "heads"],
        ["registries", "list"],
        ["registries", "report"],
        ["run", "deadlines"],
        # careless input: one line each, within the terminal
        ["cases", "pay", case, "1,000.00", "--on", "2026-01-05"],
        ["cases", "show", "(2025)京O105执10008号"],
        ["query", case, "--requested-by", judge, "--registry", "bank-nope"],
    ]
    with serving(["cli", "sim", "--debtors", DEBTORS, "--seed", "1"], env, ready="serving"):
        commands.append(["query", case, "--requested-by", judge, "--dry-run"])
        wide: dict[str, list[str]] = {}
        for args in commands:
            code, text = on_a_terminal([sys.executable, "-m", "cli", *args], env, ROOT)
            assert code in (0, 1, 2), (args, text[-2000:])
            assert "Traceback" not in text, (args, text[-3000:])
            if too_wide(text):
                wide[" ".join(args)] = too_wide(text)
    assert wide == {}
