"""A court's case file (CSV or JSON lines): read with a bound, checked whole, written back.

One row per case-debtor pair, with the fields in `FIELDS`. `read_case_file` lists every problem with its
line and field (`IntakeError`) and returns checked rows only when every row is good; the intake
(`casebook.intake`) then imports them. No database here.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from models.supervision import bureau_today
from models.values import (
    CaseNumber,
    DebtorKind,
    InvalidValue,
    parse_date,
    parse_debtor_id,
    parse_yuan,
)

#: What a case is, beside its number: every row of the case must agree on these.
CASE_FIELDS = (
    "filed_on",
    "judge",
    "applicant",
    "principal",
    "judgment_interest",
    "costs",
    "performance_due_on",
)
#: A case file's columns, in order: one row per case-debtor pair.
FIELDS = ("case_number", *CASE_FIELDS, "debtor_kind", "debtor_id", "debtor_name")
#: Columns a file may have or leave out: a person's dependants, when known (the living allowance counts
#: them: models.exemptions).
OPTIONAL_FIELDS = ("dependants",)
MAX_DEPENDANTS = 20


#: Fields that may be left empty (they then mean 0).
OPTIONAL_AMOUNTS = ("judgment_interest", "costs")


MAX_TEXT = {"judge": 100, "applicant": 200, "debtor_name": 200}


_FORMULA_START = ("=", "+", "-", "@")


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
    dependants: int | None = None

    def case_fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in CASE_FIELDS)


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
    unknown = [n for n in names if n not in FIELDS + OPTIONAL_FIELDS]
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
        unknown = [k for k in value if k not in FIELDS + OPTIONAL_FIELDS]
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
    rows = list(rows)
    optional = tuple(f for f in OPTIONAL_FIELDS if any(row.get(f) not in (None, "") for row in rows))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS + optional, restval="")
        # An optional column left empty in every row is left out; any other unknown key is an error.
        wanted = FIELDS + optional
        rows = [{k: v for k, v in row.items() if k in wanted or v not in (None, "")} for row in rows]
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


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


def _dependants(raw: Any) -> int | None:
    """Empty or absent: not known. Else a whole number from 0 to MAX_DEPENDANTS."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > MAX_DEPENDANTS:
        raise InvalidValue("dependants", f"must be a whole number from 0 to {MAX_DEPENDANTS}, or empty")
    return int(text)


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
    take("dependants", _dependants)
    if values.get("dependants") is not None and values.get("debtor_kind") is DebtorKind.ORGANISATION:
        errors.append(RowError(line, "dependants", "only a person has dependants: leave it empty"))
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
        dependants=values["dependants"],
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
            for name, mine, theirs in zip(CASE_FIELDS, row.case_fields(), case.case_fields(), strict=True):
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
