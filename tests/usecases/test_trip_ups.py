"""What a judge and an operator tripped over (issue 42), each held by a test that failed before the fix."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _on_a_terminal(code: str, home: Path) -> tuple[str, Path]:
    """Run `code` in a fresh interpreter whose output is a terminal (as an operator's is), outside CI, with
    PREFECT_HOME at `home`; what it printed."""
    from prefect._internal.analytics.ci_detection import CI_ENV_VARS

    env = {k: v for k, v in os.environ.items() if k not in CI_ENV_VARS and k != "DO_NOT_TRACK"}
    env |= {"PREFECT_HOME": str(home), "HOME": str(home)}
    primary, secondary = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=secondary,
            stderr=secondary,
            timeout=120,
            check=True,
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end is closed: all is read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
    return b"".join(chunks).decode(errors="replace"), home


@pytest.mark.parametrize("clerk_defaults", [True, False], ids=["clerk", "prefect-alone"])
def test_prefect_neither_announces_nor_writes_telemetry_on_an_operators_terminal(
    tmp_path: Path, clerk_defaults: bool
) -> None:
    """Item 5: the clerk's Prefect defaults (set by every entry point before Prefect loads) say DO_NOT_TRACK;
    Prefect alone, on the same terminal, does announce and write (the test can fail)."""
    setup = (
        "from clerk.settings import use_prefect_defaults; use_prefect_defaults(); " if clerk_defaults else ""
    )
    printed, home = _on_a_terminal(setup + "import prefect", tmp_path)
    written = sorted(p.name for p in home.rglob("*") if "telemetry" in p.name)
    if clerk_defaults:
        assert "anonymous usage" not in printed
        assert written == []
    else:
        assert "anonymous usage" in printed or written, (
            "Prefect alone no longer tells: the test holds nothing"
        )
