"""What every command of `clerk` shares: the root app, the consoles, clear errors, the unit of work, who
is acting and may they, and the options several commands take.

Every command that needs the database upgrades its schema on first use. Errors in what the user typed or
in a file are printed as one clear line per problem (field and rule), with exit code 2; nothing is written
when a command fails.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from clerk.casebook import access, casefile, cases
from clerk.settings import Settings, SettingsError, get_settings
from clerk.store import audit, db
from clerk.store.heads import HeadError
from clerk.store.tree import TreeError
from cli import console
from cli.options import RequestedByOption as RequestedByOption
from connectors.loader import ConnectorLoadError
from connectors.simulator.serve import SimulatorError
from models.access import Action
from models.supervision import bureau_today
from models.values import CaseNumber, InvalidValue, parse_date

app = typer.Typer(
    help="query-clerk: asset query and control for court enforcement bureaus.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold personal data
    rich_markup_mode=None,
)

out, err = console.out, console.err

F = TypeVar("F", bound=Callable[..., Any])

SAMPLE_CASES = Path(__file__).resolve().parents[1] / "samples" / "cases.csv"


def friendly_errors(func: F) -> F:
    """Turn the errors a user can fix into clear messages and exit code 2 (1 for an unreachable database)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except casefile.IntakeError as exc:
            err.print(
                f"error: the case file was not imported ({len(exc.errors)} problem(s)); nothing was written:"
            )
            for problem in exc.errors[:200]:
                err.print(f"  {problem}")
            if len(exc.errors) > 200:
                err.print(f"  … and {len(exc.errors) - 200} more")
            raise typer.Exit(2) from None
        except (
            InvalidValue,
            cases.CaseNotFound,
            SettingsError,
            ConnectorLoadError,
            SimulatorError,
            HeadError,
            TreeError,
        ) as exc:
            err.print(f"error: {exc}")
            raise typer.Exit(2) from None
        except OperationalError as exc:
            # The URL may hold a password: name the problem, not the connection string.
            reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
            err.print(f"error: the database cannot be reached or used: {reason}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return get_settings()


def sessions() -> sessionmaker[Session]:
    return db.session_factory(db.engine_for(settings().effective_database_url))


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any error."""
    with sessions().begin() as session:
        yield session


def actor_name(explicit: str | None) -> str:
    name = explicit or settings().actor or getpass.getuser()
    return audit.Actor.user(name)


def day(value: str | None, field: str) -> dt.date:
    return bureau_today() if value is None else parse_date(value, field)


OnOption = Annotated[
    str | None, typer.Option("--on", help="The day to compute what is owed on (YYYY-MM-DD); default today.")
]
ActorOption = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who is doing this (the case's judge, or a person CLERK_PEOPLE allows at its court), for the "
        "audit trail; default CLERK_ACTOR or $USER.",
    ),
]


def operator() -> str:
    """Who runs this command, for the audit trail of a refusal: CLERK_ACTOR or the login, never a name
    given on the command line."""
    return audit.Actor.user(settings().actor or getpass.getuser())


def check_access(number: str, who: str, action: Action, field: str = "requested_by") -> None:
    """Refuse (audited, under the operator) before anything is asked of a registry or changed."""
    conf = settings()
    with unit_of_work() as session:
        case = cases.get_case(session, number)
    try:
        access.authorize(
            db.session_factory(db.engine_for(conf.effective_database_url)),
            case,
            who,
            action,
            conf.access,
            operator(),
        )
    except access.Refused as exc:
        raise InvalidValue(field, str(exc).removeprefix("requested_by: ")) from None


def acting(case_number: str, actor: str | None, action: Action) -> str:
    """The audit trail's actor for a change to a case, once the person (--actor, else CLERK_ACTOR or the
    login) is allowed to make it: the case's judge, or a person CLERK_PEOPLE allows at its court."""
    who = actor or settings().actor or getpass.getuser()
    check_access(str(CaseNumber.parse(case_number)), who, action, "--actor")
    return audit.Actor.user(who)


OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Replace the file if it exists (a link there is replaced, never followed)."
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why, for the audit trail (required).")]
