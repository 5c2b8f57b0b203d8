"""Case intake: read a court's case file (CSV or JSON lines), check all of it, then import it whole.

One row per case-debtor pair, with the fields in `FIELDS`. Nothing is written unless every row is good:
`read_case_file` lists every problem with its line and field (`IntakeError`); `import_cases` checks the rows
against what the database already holds, then writes cases, debtors, links and audit events in the caller's
transaction. Importing the same file twice changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from clerk.store import audit
from models.supervision import bureau_today
from models.tables import Case, CaseDebtor, Debtor
from models.values import (
    CaseNumber,
    DebtorKind,
    InvalidValue,
    mask_id,
    parse_date,
    parse_debtor_id,
    parse_yuan,
)

FIELDS = (
    "case_number",
    "filed_on",
    "judge",
    "applicant",
    "principal",
    "judgment_interest",
    "costs",
    "performance_due_on",
    "debtor_kind",
    "debtor_id",
    "debtor_name",
)
#: Fields that may be left empty (they then mean 0).
OPTIONAL_AMOUNTS = ("judgment_interest", "costs")
MAX_TEXT = {"judge": 100, "applicant": 200, "debtor_name": 200}
_FORMULA_START = ("=", "+", "-", "@")
_CASE_FIELDS = (
    "filed_on",
    "judge",
    "applicant",
    "principal",
    "judgment_interest",
    "costs",
    "performance_due_on",
)


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    rule: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}, {self.field}: {self.rule}"


class IntakeError(Exception):
    """A case file that cannot be imported; `errors` lists every problem found."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the case file")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class CaseRow:
    line: int
    case_number: str
    court_code: str
    filed_on: dt.date
    judge: str
    applicant: str
    principal: int
    judgment_interest: int
    costs: int
    performance_due_on: dt.date
    debtor_kind: DebtorKind
    debtor_id: str
    debtor_name: str

    def case_fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in _CASE_FIELDS)


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    cases_added: int = 0
    cases_unchanged: int = 0
    debtors_added: int = 0
    links_added: int = 0
    sha256: str = ""
    added_case_numbers: list[str] = field(default_factory=list)


# --- reading ------------------------------------------------------------------------------------------


def read_case_file(
    path: Path,
    *,
    max_bytes: int,
    exceptions: Iterable[str] = frozenset(),
    today: dt.date | None = None,
) -> tuple[list[CaseRow], str]:
    """Read and check a whole case file. Returns the rows and the file's SHA-256."""
    data = read_bounded(path, max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    text = decode(data)
    fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson") and text.lstrip().startswith("{"):
        fmt = "jsonl"
    records = _jsonl_records(text) if fmt == "jsonl" else _csv_records(text)
    return check_records(records, exceptions=exceptions, today=today), digest


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, read with a bound: a FIFO or a device (whose size says 0) is stopped at the limit,
    not read until memory runs out; a directory or an unreadable file is a clear error."""
    if path.is_dir():
        raise IntakeError([RowError(0, "file", "is a directory: name a CSV or JSON lines file")])
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise IntakeError(
            [RowError(0, "file", f"cannot be read: {exc.strerror or type(exc).__name__}")]
        ) from None
    if len(data) > max_bytes:
        raise IntakeError([RowError(0, "file", f"is more than the limit of {max_bytes:,} bytes")])
    return data


def decode(data: bytes) -> str:
    """UTF-8, with or without a byte-order mark; anything else is refused with the line it fails on."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise IntakeError(
            [RowError(line, "file", "is not UTF-8 text: save it as UTF-8 (in Excel: 'CSV UTF-8')")]
        ) from None


@dataclass(slots=True)
class Records:
    """(line number, {field: raw value}) for each record, and the structural problems met reading them."""

    items: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def _csv_records(text: str) -> Records:
    records = Records()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        records.errors.append(RowError(reader.line_num, "file", f"is not valid CSV: {exc}"))
        return records
    if header is None:
        records.errors.append(
            RowError(0, "file", "is empty: it needs a header line with " + ", ".join(FIELDS))
        )
        return records
    names = [h.strip().lower() for h in header]
    missing = [f for f in FIELDS if f not in names]
    unknown = [n for n in names if n not in FIELDS]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if missing:
        records.errors.append(RowError(1, "header", "missing column(s): " + ", ".join(missing)))
    if unknown:
        records.errors.append(RowError(1, "header", "unknown column(s): " + ", ".join(unknown)))
    if dupes:
        records.errors.append(RowError(1, "header", "repeated column(s): " + ", ".join(dupes)))
    if records.errors:
        return records
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                records.errors.append(
                    RowError(reader.line_num, "row", f"has {len(cells)} cells, the header has {len(names)}")
                )
                continue
            records.items.append((reader.line_num, dict(zip(names, cells, strict=True))))
    except csv.Error as exc:
        records.errors.append(RowError(reader.line_num, "file", f"is not valid CSV: {exc}"))
    return records


def _jsonl_records(text: str) -> Records:
    records = Records()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_float=Decimal, parse_int=_json_int)
        except json.JSONDecodeError as exc:
            records.errors.append(RowError(number, "row", f"is not valid JSON: {exc.msg}"))
            continue
        except RecursionError:
            records.errors.append(RowError(number, "row", "is nested too deeply: a row is one flat object"))
            continue
        except ValueError as exc:  # a number too long to read (_json_int)
            records.errors.append(RowError(number, "row", str(exc)))
            continue
        if not isinstance(value, dict):
            records.errors.append(RowError(number, "row", "must be a JSON object"))
            continue
        missing = [f for f in FIELDS if f not in value]
        unknown = [k for k in value if k not in FIELDS]
        if missing:
            records.errors.append(RowError(number, "row", "missing field(s): " + ", ".join(missing)))
        if unknown:
            records.errors.append(
                RowError(number, "row", "unknown field(s): " + ", ".join(map(str, unknown)))
            )
        if not missing and not unknown:
            records.items.append((number, value))
    return records


#: Digits a number in a case file may have: more is no amount of yuan (and Python refuses to read an int of
#: over 4,300 digits with a ValueError).
MAX_NUMBER_DIGITS = 30


def _json_int(text: str) -> Decimal:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(
            f"has a number of {len(text):,} digits: no field takes more than {MAX_NUMBER_DIGITS}"
        )
    return Decimal(text)


def write_case_file(path: Path, rows: Iterable[Mapping[str, str]]) -> int:
    """Write rows as a case file this module reads back (UTF-8 CSV, header `FIELDS`); returns the count."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


# --- checking -----------------------------------------------------------------------------------------


def _text(raw: Any, name: str) -> str:
    if not isinstance(raw, str):
        raise InvalidValue(name, "must be text")
    value = raw.strip()
    if not value:
        raise InvalidValue(name, "must not be empty")
    if len(value) > MAX_TEXT[name]:
        raise InvalidValue(name, f"is longer than {MAX_TEXT[name]} characters")
    if value.startswith(_FORMULA_START):
        raise InvalidValue(name, "starts like a spreadsheet formula (= + - @): not accepted")
    if any(ord(c) < 32 for c in value):
        raise InvalidValue(name, "contains control characters")
    return value


def _amount(raw: Any, name: str) -> int:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if name in OPTIONAL_AMOUNTS:
            return 0
        raise InvalidValue(name, "must not be empty")
    if isinstance(raw, float):  # pragma: no cover - JSON numbers are parsed as Decimal
        raise InvalidValue(name, "must be exact: write it as a string or a decimal number")
    return parse_yuan(raw, name, allow_zero=name != "principal")


def check_row(
    line: int, raw: Mapping[str, Any], *, exceptions: Iterable[str], today: dt.date
) -> tuple[CaseRow | None, list[RowError]]:
    """Check one record; every field is checked, so that one pass reports all of its problems."""
    errors: list[RowError] = []
    values: dict[str, Any] = {}

    def take(name: str, parse: Any) -> None:
        try:
            values[name] = parse(raw.get(name))
        except InvalidValue as exc:
            errors.append(RowError(line, exc.field, exc.rule))

    def as_str(value: Any) -> str:
        return "" if value is None else str(value)

    take("case_number", lambda v: CaseNumber.parse(as_str(v)))
    take("filed_on", lambda v: parse_date(as_str(v), "filed_on"))
    take("performance_due_on", lambda v: parse_date(as_str(v), "performance_due_on"))
    for name in ("judge", "applicant", "debtor_name"):
        take(name, lambda v, n=name: _text(v, n))
    for name in ("principal", "judgment_interest", "costs"):
        take(name, lambda v, n=name: _amount(v, n))
    take("debtor_kind", lambda v: DebtorKind.parse(as_str(v)))
    if "debtor_kind" in values:
        kind = values["debtor_kind"]
        take("debtor_id", lambda v: parse_debtor_id(kind, as_str(v), exceptions=exceptions, today=today))

    filed, due, number = values.get("filed_on"), values.get("performance_due_on"), values.get("case_number")
    if filed is not None and filed > today:
        errors.append(RowError(line, "filed_on", f"{filed} is in the future"))
    if filed is not None and due is not None and due > filed:
        errors.append(
            RowError(
                line,
                "performance_due_on",
                f"{due} is after filed_on {filed}: enforcement is filed "
                "only once the performance deadline has passed",
            )
        )
    if filed is not None and number is not None and number.year != filed.year:
        errors.append(
            RowError(line, "case_number", f"the year {number.year} does not match filed_on {filed}")
        )
    if errors:
        return None, errors
    number = values["case_number"]
    return CaseRow(
        line=line,
        case_number=str(number),
        court_code=number.court,
        filed_on=values["filed_on"],
        judge=values["judge"],
        applicant=values["applicant"],
        principal=values["principal"],
        judgment_interest=values["judgment_interest"],
        costs=values["costs"],
        performance_due_on=values["performance_due_on"],
        debtor_kind=values["debtor_kind"],
        debtor_id=values["debtor_id"],
        debtor_name=values["debtor_name"],
    ), []


def check_records(
    records: Records, *, exceptions: Iterable[str] = frozenset(), today: dt.date | None = None
) -> list[CaseRow]:
    """Check every record and the rows against each other; raise `IntakeError` listing every problem."""
    today = today or bureau_today()
    exceptions = frozenset(exceptions)
    rows: list[CaseRow] = []
    errors = list(records.errors)
    for line, raw in records.items:
        row, problems = check_row(line, raw, exceptions=exceptions, today=today)
        errors.extend(problems)
        if row is not None:
            rows.append(row)
    errors.extend(_cross_check(rows))
    if not rows and not errors:
        errors.append(RowError(0, "file", "has no case rows"))
    if errors:
        raise IntakeError(sorted(errors, key=lambda e: e.line))
    return rows


def _cross_check(rows: list[CaseRow]) -> list[RowError]:
    errors: list[RowError] = []
    first_case: dict[str, CaseRow] = {}
    first_pair: dict[tuple[str, str], int] = {}
    first_debtor: dict[str, CaseRow] = {}
    for row in rows:
        case = first_case.setdefault(row.case_number, row)
        if case is not row:
            for name, mine, theirs in zip(_CASE_FIELDS, row.case_fields(), case.case_fields(), strict=True):
                if mine != theirs:
                    errors.append(
                        RowError(row.line, name, f"differs from line {case.line} for the same case number")
                    )
        pair = (row.case_number, row.debtor_id)
        if pair in first_pair:
            errors.append(
                RowError(row.line, "debtor_id", f"repeats the case-debtor pair of line {first_pair[pair]}")
            )
        else:
            first_pair[pair] = row.line
        debtor = first_debtor.setdefault(row.debtor_id, row)
        if debtor is not row and debtor.debtor_name != row.debtor_name:
            errors.append(
                RowError(row.line, "debtor_name", f"differs from line {debtor.line} for the same debtor_id")
            )
    return errors


# --- importing ----------------------------------------------------------------------------------------

_CHUNK = 500


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def import_cases(session: Session, rows: list[CaseRow], *, actor: str, source: str = "") -> ImportReport:
    """Write checked rows in the caller's transaction. Rows that disagree with what is stored (a case
    with other amounts, a debtor with another name) raise `IntakeError` before anything is written."""
    report = ImportReport(rows=len(rows))
    case_numbers = sorted({r.case_number for r in rows})
    wanted_ids = sorted({r.debtor_id for r in rows})
    cases: dict[str, Case] = {}
    for chunk in _chunks(case_numbers):
        cases.update(
            (c.case_number, c) for c in session.scalars(select(Case).where(Case.case_number.in_(chunk)))
        )
    debtors: dict[str, Debtor] = {}
    for chunk in _chunks(wanted_ids):
        debtors.update(
            (d.id_number, d) for d in session.scalars(select(Debtor).where(Debtor.id_number.in_(chunk)))
        )
    links: set[tuple[int, int]] = set()
    known_case_ids = [c.id for c in cases.values()]
    for i in range(0, len(known_case_ids), _CHUNK):
        chunk_ids = known_case_ids[i : i + _CHUNK]
        stored = select(CaseDebtor.case_id, CaseDebtor.debtor_id).where(CaseDebtor.case_id.in_(chunk_ids))
        links.update((link.case_id, link.debtor_id) for link in session.execute(stored))

    errors = _conflicts_with_stored(rows, cases, debtors)
    if errors:
        raise IntakeError(errors)

    case_ids = {number: case.id for number, case in cases.items()}
    debtor_ids = {id_number: debtor.id for id_number, debtor in debtors.items()}
    new_case_rows = {r.case_number: r for r in rows if r.case_number not in case_ids}
    new_debtor_rows = {r.debtor_id: r for r in rows if r.debtor_id not in debtor_ids}
    if new_case_rows:
        inserted = session.execute(
            insert(Case).returning(Case.id, Case.case_number, sort_by_parameter_order=True),
            [_case_values(r) for r in new_case_rows.values()],
        )
        case_ids.update((number, case_id) for case_id, number in inserted)
    if new_debtor_rows:
        inserted = session.execute(
            insert(Debtor).returning(Debtor.id, Debtor.id_number, sort_by_parameter_order=True),
            [
                {"kind": r.debtor_kind.value, "id_number": r.debtor_id, "name": r.debtor_name}
                for r in new_debtor_rows.values()
            ],
        )
        debtor_ids.update((id_number, debtor_id) for debtor_id, id_number in inserted)

    added_links: dict[str, list[str]] = {}
    new_links: list[dict[str, int]] = []
    for row in rows:
        key = (case_ids[row.case_number], debtor_ids[row.debtor_id])
        if key in links:
            continue
        links.add(key)
        new_links.append({"case_id": key[0], "debtor_id": key[1]})
        added_links.setdefault(row.case_number, []).append(mask_id(row.debtor_id))
    if new_links:
        session.execute(insert(CaseDebtor), new_links)

    entries = [
        audit.Entry("case.imported", actor, number, _case_payload(row, added_links.pop(number, []), source))
        for number, row in new_case_rows.items()
    ]
    entries += [
        audit.Entry("case.debtors_added", actor, number, {"debtors": masked, "source": source})
        for number, masked in added_links.items()
    ]
    audit.append_many(session, entries)
    report.cases_added = len(new_case_rows)
    report.cases_unchanged = len(case_numbers) - len(new_case_rows)
    report.debtors_added = len(new_debtor_rows)
    report.links_added = len(new_links)
    report.added_case_numbers = sorted(new_case_rows)
    return report


def _case_values(row: CaseRow) -> dict[str, Any]:
    return {
        "case_number": row.case_number,
        "court_code": row.court_code,
        "filed_on": row.filed_on,
        "judge": row.judge,
        "applicant": row.applicant,
        "principal_fen": row.principal,
        "judgment_interest_fen": row.judgment_interest,
        "costs_fen": row.costs,
        "performance_due_on": row.performance_due_on,
    }


def _case_payload(row: CaseRow, debtors: list[str], source: str) -> dict[str, Any]:
    return {
        "principal_fen": row.principal,
        "judgment_interest_fen": row.judgment_interest,
        "costs_fen": row.costs,
        "filed_on": row.filed_on.isoformat(),
        "performance_due_on": row.performance_due_on.isoformat(),
        "debtors": debtors,
        "source": source,
    }


def _conflicts_with_stored(
    rows: list[CaseRow], cases: Mapping[str, Case], debtors: Mapping[str, Debtor]
) -> list[RowError]:
    errors: list[RowError] = []
    for row in rows:
        case = cases.get(row.case_number)
        if case is not None:
            stored = (
                case.filed_on,
                case.judge,
                case.applicant,
                case.principal_fen,
                case.judgment_interest_fen,
                case.costs_fen,
                case.performance_due_on,
            )
            for name, mine, theirs in zip(_CASE_FIELDS, row.case_fields(), stored, strict=True):
                if mine != theirs:
                    errors.append(
                        RowError(
                            row.line,
                            name,
                            "differs from the case already imported; "
                            "correct the case in the court's system, not by re-import",
                        )
                    )
        debtor = debtors.get(row.debtor_id)
        if debtor is not None:
            if debtor.kind != row.debtor_kind.value:
                errors.append(RowError(row.line, "debtor_kind", "differs from the debtor already imported"))
            if debtor.name != row.debtor_name:
                errors.append(RowError(row.line, "debtor_name", "differs from the debtor already imported"))
    return errors
