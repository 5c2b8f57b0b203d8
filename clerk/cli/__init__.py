"""The command line (`clerk`): the top of the import order, the one part of `clerk` that may import
`flows` and `deployments`."""

from __future__ import annotations

from clerk.cli.app import SAMPLE_CASES, app, main

__all__ = ["SAMPLE_CASES", "app", "main"]
