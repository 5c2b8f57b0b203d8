"""The command line's shared options: a leaf, imported by the commands and by `cli.common`, importing none
of them."""

from __future__ import annotations

from typing import Annotated

import typer

RequestedByOption = Annotated[
    str,
    typer.Option(
        "--requested-by",
        help="Who asks (required): the case's judge, or a person CLERK_PEOPLE allows at the case's court.",
    ),
]

SeedOption = Annotated[int, typer.Option(help="The same seed gives the same world.")]
