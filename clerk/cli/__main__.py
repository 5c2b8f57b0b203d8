"""`python -m clerk.cli`: the same as the `clerk` command."""

from clerk.cli import main

main()
