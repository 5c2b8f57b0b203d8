"""What every run's process sets up once: imported by the fork server (`deployments.forkserver.PRELOAD`), so
each run, a fork of it, starts with it.

`clerk serve` stopping (SIGTERM, Ctrl-C) cancels the runs in flight: the runner signals each run's process
and marks the run Cancelled. Prefect's engine in that process, interrupted by the signal before it learns of
the cancellation, ends with `ERROR | Flow run '…' - Finished in state Running()`: an error line for an
operator to chase, on a run the UI shows Cancelled. `StoppedByTheRunner` says instead, at INFO, what
happened. Any other "Finished in state …" line of a flow run stays as Prefect writes it.

A run's page in the UI opens on its logs: there, a task's "Finished in state Completed()" (one per task, seven
for a case query) buried the lines that say what the run did. `TasksThatWentWell` drops exactly those; a task
that failed, retried or was cancelled still says so, and the task runs' tab still lists every task's state.
"""

from __future__ import annotations

import logging
import sys

from prefect.exceptions import TerminationSignal

#: What the engine's last line says instead, when a termination signal ended the run.
STOPPED = "Stopped: the runner is shutting down and cancels this run (the UI shows it Cancelled)"


class StoppedByTheRunner(logging.Filter):
    """The engine's "Finished in state Running()" as a termination signal unwinds the run: INFO, in words."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.ERROR
            and str(record.msg).startswith("Finished in state Running")
            and isinstance(sys.exc_info()[1], TerminationSignal)
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = STOPPED, None
        return True


class TasksThatWentWell(logging.Filter):
    """Drops a task run's "Finished in state Completed()" (INFO); keeps every other line."""

    def filter(self, record: logging.LogRecord) -> bool:
        went_well = str(record.msg).startswith("Finished in state Completed(")
        return not (record.levelno == logging.INFO and went_well)


def install() -> None:
    """Once per process: the filters on the loggers of Prefect's flow and task runs (idempotent)."""
    for name, kind in (("prefect.flow_runs", StoppedByTheRunner), ("prefect.task_runs", TasksThatWentWell)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


install()
