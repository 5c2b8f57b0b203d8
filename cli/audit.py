"""`clerk audit` (verify and export the audit trail) and `clerk report` (the daily report)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clerk.casebook import cases, exports
from clerk.store import audit, heads, tree
from cli.common import OverwriteOption, err, friendly_errors, out, sessions, settings, unit_of_work
from models.values import InvalidValue, format_yuan, parse_date

audit_app = typer.Typer(
    help="Check, prove and export the audit log (a Merkle tree with signed heads).", no_args_is_help=True
)


report_app = typer.Typer(help="Reports for the bureau.", no_args_is_help=True)


def _public_key(value: str | None) -> Ed25519PublicKey | None:
    """The key heads are checked with: the one given, else this installation's own, if it has one yet."""
    if value is not None:
        return heads.load_public_key(value)
    config = settings()
    if config.audit_key is None and not config.effective_audit_key_file.exists():
        return None
    return heads.signing_key(config, create=False).public_key()


def _kept(value: str | None) -> heads.KeptHead | None:
    return heads.KeptHead.parse(value) if value else None


PublicKeyOption = Annotated[
    str | None,
    typer.Option(
        "--public-key",
        help="The court's public key (a PEM file, or its 32 bytes in base64); default this installation's.",
    ),
]
ExpectHeadOption = Annotated[
    str | None,
    typer.Option(
        "--expect-head",
        help="A head kept earlier (SIZE:ROOT, or a signed head's JSON file): catches events cut or changed.",
    ),
]


@audit_app.command("verify")
@friendly_errors
def audit_verify(expect_head: ExpectHeadOption = None, public_key: PublicKeyOption = None) -> None:
    """Check the whole log: every event against its hash, the Merkle tree over them, every signed head's
    root and signature; name the first event that was edited, deleted, moved or cut."""
    kept, public = _kept(expect_head), _public_key(public_key)
    with unit_of_work() as session, _progress("checking the log") as progress:
        result = tree.verify(session, public, kept, progress)
        latest = tree.latest_head(session)
    if result.ok:
        out.print(
            f"audit log intact: {result.events:,} event(s), {result.placed:,} in the tree, "
            f"{result.pending:,} waiting for the sequencer; {result.heads:,} signed head(s) checked"
        )
        if result.indexed:
            out.print(
                f"per-case index rebuilt from the log: {result.cases:,} case(s); every v2 head's index "
                "root matches it, each the one before extended by its new events only"
            )
        if latest is not None:
            out.print(f"latest signed head: {latest.short} (signed {latest.signed_at})")
        if public is None and result.heads:
            out.print("signatures not checked: this installation has no key; give --public-key")
        return
    where = f" at event {result.broken_at}" if result.broken_at is not None else ""
    err.print(f"audit log BROKEN{where}: {result.reason}; the {result.placed:,} event(s) before it hold")
    raise typer.Exit(1)


@contextlib.contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A bar on standard error while a long check runs, on a terminal only (a log or a pipe gets the
    result alone)."""
    if not err.is_terminal:
        yield lambda done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@audit_app.command("sequence")
@friendly_errors
def audit_sequence() -> None:
    """Place the events written since the last run in the log and sign its head (the sequencer
    deployment does this every 10 minutes)."""
    done = tree.seal(sessions(), settings())
    out.print(f"{done.placed:,} event(s) placed; the log holds {done.size:,}")
    if done.head is not None:
        out.print(f"signed head: {done.head.short} (signed {done.head.signed_at})")


@audit_app.command("heads")
@friendly_errors
def audit_heads(
    limit: Annotated[int, typer.Option(min=1, help="Show the newest this many.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="The signed heads as JSON lines.")] = False,
) -> None:
    """The log's signed tree heads, newest first: publish them, keep them, check later with them."""
    with unit_of_work() as session:
        signed = tree.heads(session)
    shown = signed[::-1][:limit]
    if as_json:
        for head in shown:
            out.print(json.dumps(head.as_dict()), soft_wrap=True)
    elif shown:
        table = Table("signed at", "head (events:root)", box=box.SIMPLE_HEAD)
        table.columns[1].overflow = "fold"
        for head in shown:
            table.add_row(str(head.signed_at), head.short)
        out.print(table)
    if len(signed) > len(shown):
        err.print(f"{len(signed) - len(shown)} older head(s) not shown (--limit)")


@audit_app.command("public-key")
@friendly_errors
def audit_public_key() -> None:
    """Print the public key that checks this court's signed heads (PEM): give it to whoever checks."""
    key = heads.signing_key(settings()).public_key()
    out.print(heads.public_pem(key), end="")
    err.print(f"key id {heads.key_id(key)}")


@audit_app.command("export")
@friendly_errors
def audit_export(
    case: Annotated[str, typer.Option("--case", help="The case whose trail to export.")],
    fmt: Annotated[
        str, typer.Option("--format", help="proof (JSON with a proof per event), jsonl or csv.")
    ] = "proof",
    since: Annotated[
        str | None,
        typer.Option(help="A head the recipient kept (SIZE:ROOT or a file): add a proof the log only grew."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="A new file to write; default stdout.")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Export one case's audit trail. The default, proof, places new events in the log first and gives
    each event its inclusion proof against the latest signed head, for `clerk audit check-export`."""
    if fmt not in ("proof", "jsonl", "csv"):
        raise InvalidValue("--format", f"{fmt!r} is not a format: use proof, jsonl or csv")
    kept = _kept(since)
    if fmt == "proof":
        tree.seal(sessions(), settings())
    with unit_of_work() as session:
        number = cases.get_case(session, case).case_number
        if fmt == "proof":
            latest = tree.latest_head(session)
            if latest is None:
                raise tree.TreeError("the log has no signed head yet: nothing has been audited")
            document = tree.case_export(session, number, latest, kept)
            count = len(document["events"])
            text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
        else:
            buffer = io.StringIO()
            count = audit.export(audit.case_events(session, number), buffer, fmt)
            text = buffer.getvalue()
    if output is None:
        sys.stdout.write(text)
    else:
        with exports.open_new(output, field="--output", replace=overwrite) as handle:
            handle.write(text)
    err.print(f"{count} event(s) exported for {number}")


@audit_app.command("check-export")
@friendly_errors
def audit_check_export(
    file: Annotated[Path, typer.Argument(help="An export (clerk audit export) or a consistency proof file.")],
    public_key: Annotated[
        str, typer.Option("--public-key", help="The court's public key: a PEM file or its text.")
    ],
    expect_head: ExpectHeadOption = None,
) -> None:
    """Check an export offline, with no database: the head's signature, every event against its proof,
    and with --expect-head that the log only grew since that head. Exit 1 if anything fails."""
    public, kept = heads.load_public_key(public_key), _kept(expect_head)
    document = _read_json(file)
    if not isinstance(document, dict):
        raise InvalidValue("FILE", "not an audit export")
    if document.get("format") == heads.CONSISTENCY_FORMAT:
        result = heads.check_consistency(document, public, kept)
        what = f"consistency from {document['old'].get('size')} to {document['new'].get('size')} event(s)"
    else:
        result = heads.check_export(document, public, kept)
        what = f"{result.events} event(s) of {document.get('case_number')}"
    if result.ok:
        head = result.head
        out.print(f"verified: {what} against the signed head {head.short if head else '?'}")
        if result.complete:
            out.print("complete: every event of the case under that head, in log order, and no other")
        elif result.complete is None and document.get("format") == heads.EXPORT_FORMAT:
            out.print(
                "completeness not proven: the head was signed before the log kept a per-case index "
                "(head v1); an export against a newer head proves it"
            )
        return
    err.print(f"NOT verified: {what}; {len(result.problems)} problem(s):")
    for problem in result.problems[:50]:
        err.print(f"  {problem}")
    raise typer.Exit(1)


@audit_app.command("consistency")
@friendly_errors
def audit_consistency(
    old: Annotated[str, typer.Argument(help="The older head: its size, or SIZE:ROOT / a file someone kept.")],
    new: Annotated[str, typer.Argument(help="The newer head's size, or 'latest'.")] = "latest",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the proof here for others to check.")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Prove that the log only grew between two signed heads, and check the proof (exit 1 if it fails)."""
    with unit_of_work() as session:
        newer = tree.latest_head(session) if new == "latest" else tree.head_at(session, _size(new, "NEW"))
        if newer is None:
            raise tree.TreeError("the log has no signed head yet")
        kept = heads.KeptHead.parse(old, "OLD") if not old.isdigit() else None
        older = tree.head_at(session, kept.size if kept else int(old))
        if kept is not None and kept.root != older.root:
            err.print(
                f"the kept head of {kept.size} event(s) is not the log's head of that size: the log changed"
            )
            raise typer.Exit(1)
        document = tree.consistency_document(session, older, newer)
    result = heads.check_consistency(document, heads.signing_key(settings(), create=False).public_key())
    if output is not None:
        with exports.open_new(output, field="--output", replace=overwrite) as handle:
            handle.write(json.dumps(document, indent=1) + "\n")
    if not result.ok:
        err.print("NOT consistent: " + "; ".join(result.problems))
        raise typer.Exit(1)
    out.print(f"consistent: the log of {newer.size:,} event(s) extends the one of {older.size:,}")
    if output is None:
        out.print(json.dumps(document, indent=1), soft_wrap=True)


#: The largest export check-export reads: a case's trail is thousands of events, not millions.
_EXPORT_MAX_BYTES = 512 * 1024 * 1024


def _read_json(file: Path) -> object:
    if file.is_dir():
        raise InvalidValue("FILE", "is a directory: name an export file")
    try:
        with file.open("rb") as handle:
            data = handle.read(_EXPORT_MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidValue("FILE", f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > _EXPORT_MAX_BYTES:
        raise InvalidValue("FILE", f"is more than {_EXPORT_MAX_BYTES:,} bytes: not an export")
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidValue("FILE", "is not an export: not JSON in UTF-8") from None


def _size(value: str, field: str) -> int:
    if not value.isdigit():
        raise InvalidValue(field, f"{value!r} is not a head's size (a whole number) or 'latest'")
    return int(value)


#: The daily report at a terminal: three tables that fit 80 columns (the CSV and the artifact keep every
#: column): (header, the report's column, money in fen).
_DAILY_TABLES = (
    (
        "the day's work",
        (
            ("queries", "queries", False),
            ("hits", "hits", False),
            ("frozen", "frozen", False),
            ("yuan frozen", "frozen_fen", True),
            ("seized", "seized", False),
            ("overdue", "overdue_nodes", False),
        ),
    ),
    (
        "measures kept and ended, money moved",
        (
            ("renewed", "renewed", False),
            ("released", "released", False),
            ("lapsed", "lapsed", False),
            ("deductions", "deductions", False),
            ("yuan deducted", "deducted_fen", True),
        ),
    ),
    (
        "active cases by track",
        (
            ("fast", "active_fast", False),
            ("simple", "active_simple", False),
            ("normal", "active_normal", False),
            ("special", "active_special", False),
            ("untriaged", "active_untriaged", False),
        ),
    ),
)


@report_app.command("daily")
@friendly_errors
def report_daily(
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default yesterday (Beijing time).")] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also write the report as CSV to this new file.")
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Per court and judge: queries, hits, frozen and seized, renewed, released, deductions, overdue nodes,
    and the active cases by track, with totals; amounts in yuan."""
    from clerk.supervision import reports

    on = parse_date(day, "--day") if day else reports.yesterday(dt.datetime.now(dt.UTC))
    if day is None:
        err.print(f"the report for yesterday, {on} (Beijing time); --day YYYY-MM-DD for another day")
    with unit_of_work() as session:
        rows = reports.daily(session, on)
    if not rows:
        out.print(f"Daily report {on}: nothing was done that day")
    sums = reports.totals(rows)
    for title, columns in _DAILY_TABLES if rows else ():
        table = Table(
            title=f"Daily report {on}: {title}", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left"
        )
        table.add_column("court", no_wrap=True)
        table.add_column("judge", no_wrap=True)
        for header, _, _ in columns:
            table.add_column(header, justify="right", no_wrap=True)

        def cells(
            values: Mapping[str, object], columns: Sequence[tuple[str, str, bool]] = columns
        ) -> list[str]:
            return [
                format_yuan(int(str(values[key]))) if money else f"{values[key]:,}"
                for _, key, money in columns
            ]

        for r in rows:
            table.add_row(str(r["court"]), str(r["judge"]), *cells(r))
        if len(rows) > 1:
            table.add_section()
            table.add_row("all", "", *cells(sums))
        out.print(table)
    if csv_file is not None:
        reports.write_csv(csv_file, rows, replace=overwrite)
        out.print(f"written: {csv_file} ({len(rows)} rows)")
