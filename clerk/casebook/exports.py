"""Files the clerk writes for people (reports, audit exports): never through a symbolic link, never over a
file that is there unless asked to, and never left half-written.

A new file is created with `O_CREAT | O_EXCL | O_NOFOLLOW`, which refuses a path that exists, a dangling
link included, so a link planted where an export goes cannot point the write at another file. Replacing
(`replace=True`: `--overwrite`, and the scheduled daily report, which a run for the same day writes again)
writes a temporary file beside the target and renames it over the path: a link there is replaced itself,
its target is left alone. A write that fails removes what it wrote.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from models.values import InvalidValue

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


@contextlib.contextmanager
def open_new(
    path: Path, *, field: str, replace: bool = False, encoding: str = "utf-8", newline: str = ""
) -> Iterator[TextIO]:
    """A text file to write at `path` (see the module); errors name `field`, the option that named it."""
    if path.is_dir():
        raise InvalidValue(field, f"{path} is a directory: name a file to write")
    if not path.parent.is_dir():
        raise InvalidValue(field, f"{path.parent} is not a directory that exists")
    if replace:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        target = Path(temporary)
    else:
        try:
            fd = os.open(path, _NEW, 0o640)
        except FileExistsError:
            raise InvalidValue(
                field, f"{path} exists (or is a link): choose another name, or --overwrite to replace it"
            ) from None
        except OSError as exc:
            raise InvalidValue(field, f"{path} cannot be written: {exc.strerror}") from None
        target = path
    try:
        with open(fd, "w", encoding=encoding, newline=newline) as handle:
            yield handle
        if replace:
            os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
