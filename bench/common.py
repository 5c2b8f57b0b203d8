"""What the benchmarks share: the machine's description, a results file, a table printer, running the
clerk's (or Prefect's) command line in processes of their own, and counting a Prefect server's retries."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Where the rows go: BENCH_RESULTS names another file (the test suite's quick runs write to their own).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results" / "results.jsonl")


def status_mb(field: str, pid: int | str = "self") -> float:
    """A memory figure of a process from /proc (e.g. "VmRSS" now, "VmHWM" its peak), in MB; 0 if absent.

    A process's peak is its VmHWM, never `getrusage`'s ru_maxrss: Linux carries ru_maxrss over `execve`, so a
    child started by a parent holding 800 MB reports ru_maxrss 813 MB with a VmHWM of 13 MB (the 1,000,000
    sweep's "1,074 MB peak" was the benchmark's own process, which holds the world it built)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank: of 20 runs, the 19th fastest."""
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def read_calls(pid: int | str = "self") -> int:
    """How many read system calls a process has made (/proc/PID/io `syscr`): SQLite reads each page that
    is not in its page cache with one `pread`, so this counts its cache misses, whatever the machine's
    speed (its time per call is not: on a shared host the same sweep's CPU varies by 20 %)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    return 0


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since it started (/proc/stat: user, nice, system, irq,
    softirq, over every core): the difference over a quiet interval is what everything running costs while it
    waits, the database server's processes too (PostgreSQL's postmaster is not our child)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_module(
    args: list[str], env: dict[str, str], timeout: float | None = None, show_stderr: bool = False
) -> tuple[float, str]:
    """`python -m ARGS` to its end: (seconds it took, its output); RuntimeError with the output's end when it
    fails. With `show_stderr` its standard error goes to ours as it comes (progress of long runs)."""
    seconds, (output,) = run_modules([args], env, timeout=timeout, show_stderr=show_stderr)
    return seconds, output


def run_modules(
    argss: list[list[str]], env: dict[str, str], timeout: float | None = None, show_stderr: bool = False
) -> tuple[float, list[str]]:
    """`python -m ARGS` for each ARGS at once, to the end of the last: (seconds from the first start to the
    last end, the outputs in order); RuntimeError naming the first that failed. After `timeout` seconds
    all are killed and `subprocess.TimeoutExpired` raised."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=None if show_stderr else subprocess.PIPE,
            text=True,
        )
        for args in argss
    ]
    deadline = None if timeout is None else started + timeout
    done = []
    try:
        for args, process in zip(argss, processes, strict=True):
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            done.append((args, process, *process.communicate(timeout=left)))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    seconds = time.perf_counter() - started
    for args, process, out, err in done:
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:3])}… failed ({process.returncode}): {(out + (err or ''))[-2000:]}"
            )
    return seconds, [out for _, _, out, _ in done]


@contextmanager
def serving(
    args: list[str],
    env: dict[str, str],
    ready: str,
    stop: signal.Signals = signal.SIGTERM,
    script: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """`python -m ARGS` in the background for the block (with `script`, ARGS[0] is a console script of this
    environment, run as operators run it: `clerk serve`), once it printed a line containing `ready`; what
    it prints afterwards is read and dropped (a full pipe would stop it), and `stop` ends it."""
    command = (
        [str(Path(sys.executable).parent / args[0]), *args[1:]] if script else [sys.executable, "-m", *args]
    )
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    output = process.stdout
    drain = threading.Thread(target=_drop, args=(output,), daemon=True)
    try:
        for line in output:
            if ready in line:
                break
        else:
            raise RuntimeError(f"{' '.join(args[:2])} stopped before it was ready (exit {process.wait()})")
        drain.start()
        yield process
    finally:
        process.send_signal(stop)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if drain.is_alive():
            drain.join(timeout=5)


def machine() -> dict[str, Any]:
    """What the figures ran on: the processor's model too, since these shared hosts differ from run to run."""
    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def record(benchmark: str, rows: list[dict[str, Any]], *, quick: bool) -> None:
    """Append `rows` to the results file, each with the benchmark's name, the time, the machine and whether
    it ran at its small size (`--quick`: smoke, not a measurement)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    head = {"benchmark": benchmark, "at": stamp, "machine": machine()}
    with RESULTS.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(head | row | {"quick": quick}) + "\n")


def table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row[c]).ljust(widths[c]) for c in columns))


def _drop(lines: Iterator[str]) -> None:
    for _ in lines:
        pass


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class ClientRetries(logging.Handler):
    """The reasons of Prefect's client retries ("Received response with retryable status code 503"); it waits
    ~2 s before its first retry, and says why at DEBUG only."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: list[str] = []

    @contextmanager
    def listening(self) -> Iterator[None]:
        logger = logging.getLogger("prefect.client")
        level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        try:
            yield
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Another attempt will be made" in message:
            self.reasons.append(message.split(". Another attempt")[0])


def server_retries(log: Path) -> int:
    """How many times the server tried a request again after its database refused it as busy
    (deployments/prefect_app.py `RetryBusy`)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return sum("busy (503), trying again" in line for line in lines)
