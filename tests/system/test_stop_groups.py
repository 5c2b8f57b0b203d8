"""`clerk down` stops process groups (deployments/cluster.py `stop_groups`) with real processes: one that ends
on SIGTERM; one that ignores SIGTERM (as a Prefect 3.8 worker does) but whose child, a flow run, ends on it:
killed once its child is gone, long before the timeout; one whose child ignores SIGTERM too: killed at the
timeout. All signalled at once."""

from __future__ import annotations

import subprocess
import sys
import time

from deployments.cluster import SETTLE_S, alive, stop_groups

OBEYS = "import time; time.sleep(60)"
IGNORES = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def _parent(child: str) -> str:
    """A parent that ignores SIGTERM, starts `child` in its group, and then sleeps."""
    return (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"
    )


def _start(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def test_each_group_stops_by_itself_once_its_children_end_or_at_the_timeout() -> None:
    # A child that obeys SIGTERM resets its own handler: the parent's SIG_IGN is inherited across exec.
    obeying_child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_DFL); time.sleep(60)"
    processes = {
        "obeys": _start(OBEYS),
        "ignores, its run obeys": _start(_parent(obeying_child)),
        "ignores, its run too": _start(_parent(IGNORES)),
    }
    time.sleep(2)  # every child started
    said: list[str] = []
    timeout_s = SETTLE_S + 8
    started = time.monotonic()
    try:
        stopped = stop_groups({name: p.pid for name, p in processes.items()}, timeout_s, said.append)
        took = time.monotonic() - started
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
            p.wait()
    assert sorted(stopped) == sorted(processes)
    assert "stopped obeys" in said
    assert "stopped ignores, its run obeys (killed: its runs had ended, it had not)" in said
    assert f"stopped ignores, its run too (killed: still running after {timeout_s:.0f} s)" in said
    assert said.index("stopped ignores, its run obeys (killed: its runs had ended, it had not)") < said.index(
        f"stopped ignores, its run too (killed: still running after {timeout_s:.0f} s)"
    )
    assert timeout_s <= took < timeout_s + 5  # all signalled at once: one timeout, not one each
    assert not any(alive(p.pid) for p in processes.values())
