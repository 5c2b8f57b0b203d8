"""Python's cycle collector, tuned while bulk work runs in this process: a sweep (clerk.sweeping) or the
audit log's per-case index taking in a head's events (clerk.store.caseindex).

Bulk work makes millions of short-lived containers (rows, replies, requests, a tree's nodes). With the
default thresholds the collector ran ~5,000 times in a sweep of 20,000 debtors, 43 of them over every object
in the process (modules, mappers, settings, connectors), and took ~5.5 s of the sweep's ~17 s of CPU
(bench/README.md item 25); it took ~1 s of each head's ~5 s of index work at 1,000,000 cases (item 27).
While bulk work runs, the objects alive when it began are set aside (`gc.freeze`: they are not scanned
again) and the youngest generation is collected every `COLLECT_EVERY` new containers. Cycles are still
collected, less often; both are undone when the last bulk work in the process ends (threads included: the
count is kept under a lock).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

#: While bulk work runs, Python's collector looks for reference cycles every this many new container
#: objects (its default is 700).
COLLECT_EVERY = 50_000

_lock = threading.Lock()
_running = 0  # bulk work running in this process (the collector's settings are the process's)
_thresholds = gc.get_threshold()


@contextlib.contextmanager
def tuned_for_bulk() -> Iterator[None]:
    """The collector tuned for bulk work while this block runs (see the module's text)."""
    global _running, _thresholds
    with _lock:
        if _running == 0:
            _thresholds = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(COLLECT_EVERY, *_thresholds[1:])
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                gc.set_threshold(*_thresholds)
                gc.unfreeze()
