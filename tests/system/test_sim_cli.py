"""`clerk sim` as a real process, `clerk registries check` against it, and the case file it writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clerk.settings import get_settings
from cli import app
from connectors.simulator.serve import free_loopback_ports

runner = CliRunner()


def registries(ports: list[int]) -> str:
    kinds = [
        ("bank-a", "bank", "bank-json"),
        ("bank-b", "bank", "bank-json"),
        ("realestate", "real_estate", "real-estate-xml"),
        ("vehicles", "vehicle", "vehicle-json"),
    ]
    return json.dumps(
        [
            {
                "code": code,
                "name": code,
                "kind": kind,
                "adapter": adapter,
                "credential": "sim-token",
                "base_url": f"http://127.0.0.1:{port}",
            }
            for (code, kind, adapter), port in zip(kinds, ports, strict=True)
        ]
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sim_serves_every_registry_and_its_case_file_imports(
    clerk_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLERK_REGISTRIES", registries(free_loopback_ports(4)))
    get_settings.cache_clear()
    cases = tmp_path / "sim-cases.csv"
    env = dict(os.environ)
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "sim",
            "--debtors",
            "3000",
            "--seed",
            "9",
            "--faults",
            '{"throttle": 0.2, "seed": 3}',  # health and queries are retried through 429s
            "--write-cases",
            str(cases),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = sim.stdout.readline() if sim.stdout else ""
            lines.append(line)
            if "serving; Ctrl-C to stop" in line or not line:
                break
        assert any("serving" in line for line in lines), "".join(lines)
        assert "3,000 debtors (seed 9)" in lines[0]

        result = runner.invoke(app, ["registries", "check"])
        assert result.exit_code == 0, result.output
        assert "all 4 registries answer" in result.stdout

        result = runner.invoke(app, ["cases", "import", str(cases)])
        assert result.exit_code == 0, result.output
        assert "3000 debtor(s) added" in result.stdout
    finally:
        sim.send_signal(signal.SIGTERM)
        output, _ = sim.communicate(timeout=30)
    assert sim.returncode == 0
    assert "simulators stopped" in output

    result = runner.invoke(app, ["registries", "check"])
    assert result.exit_code == 1
    assert "4 of 4 registries are down" in result.stderr
    assert "cannot connect" in result.stdout
