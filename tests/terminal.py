"""A command run as at an operator's terminal: its output a pseudo-terminal of a given size."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import Mapping
from pathlib import Path

from rich.cells import cell_len

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def on_a_terminal(
    args: list[str], env: Mapping[str, str], cwd: Path, columns: int = 80, timeout_s: float = 600
) -> tuple[int, str]:
    """Run `args` with stdout and stderr a terminal `columns` wide; its exit code and what it showed, as the
    screen ends up: escape codes removed, a line redrawn after a carriage return kept as last drawn."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    try:
        process = subprocess.Popen(
            args, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary
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
        code = process.wait(timeout=timeout_s)
    finally:
        os.close(primary)
    raw = _ESCAPES.sub("", b"".join(chunks).decode(errors="replace"))
    lines = [line.split("\r")[-1] if "\r" in line else line for line in raw.replace("\r\n", "\n").split("\n")]
    return code, "\n".join(lines)


def too_wide(text: str, columns: int = 80) -> list[str]:
    """The lines of `text` wider than `columns` terminal cells (a CJK character is two)."""
    return [line for line in text.splitlines() if cell_len(line) > columns]
