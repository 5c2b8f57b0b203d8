"""The Prefect server `clerk serve` starts for itself (deployments/embedded.py): its output goes to a log file,
never to a pipe nobody reads (which stops the server once 64 KB of tracebacks fill it), and a server that
cannot start says why."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from deployments.embedded import prefect_server, server_log


def test_a_server_that_cannot_start_says_why_and_its_output_is_in_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    said: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = pytest.raises(RuntimeError, match=rf"stopped: Port {port} is already in use")
        with failed, prefect_server(port, said.append):
            pytest.fail("the server came up on a port that is taken")
    log = tmp_path / "prefect" / "server.log"
    assert server_log() == log
    assert f"Port {port} is already in use" in log.read_text()
    assert str(log) in said[0]
