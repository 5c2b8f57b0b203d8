"""Adding up what steps did, field by field: the one way the clerk's counts (`querying.Recorded`,
`control.Counts`, `control.watch.WatchResult`) add another step's to their own."""

from __future__ import annotations

import dataclasses
from typing import Any


def add_fields(total: Any, other: Any, *, skip: tuple[str, ...] = ()) -> None:
    """Add each field of the dataclass `other` to the same field of `total` (but those in `skip`): numbers
    summed, sets joined, dicts of numbers summed by key, a field with its own `add` added with it."""
    for f in dataclasses.fields(other):
        if f.name in skip:
            continue
        mine, theirs = getattr(total, f.name), getattr(other, f.name)
        if isinstance(theirs, int) and not isinstance(theirs, bool):
            setattr(total, f.name, mine + theirs)
        elif isinstance(theirs, set):
            mine |= theirs
        elif isinstance(theirs, dict):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        elif hasattr(theirs, "add"):
            mine.add(theirs)
        else:
            raise TypeError(f"{f.name}: a {type(theirs).__name__} is not added field by field")
