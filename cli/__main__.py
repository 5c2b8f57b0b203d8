"""`python -m cli`: the same as the `clerk` command."""

from cli import main

main()
