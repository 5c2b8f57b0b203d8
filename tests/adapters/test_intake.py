"""Reading and checking case files: every problem is listed with its line and field."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest

from clerk.casebook.casefile import FIELDS, IntakeError, read_case_file

TODAY = dt.date(2026, 11, 23)
GOOD = {
    "case_number": "(2024)豫0185执1234号",
    "filed_on": "2024-03-01",
    "judge": "李法官",
    "applicant": "登封华鑫建材有限公司",
    "principal": "100000",
    "judgment_interest": "2500.50",
    "costs": "",
    "performance_due_on": "2024-01-01",
    "debtor_kind": "person",
    "debtor_id": "11010519491231002X",
    "debtor_name": "张三",
}
ORG = GOOD | {"debtor_kind": "organisation", "debtor_id": "91350100M000100Y43", "debtor_name": "某某公司"}


def write_csv(
    tmp_path: Path, rows: list[dict[str, str]], fields: tuple[str, ...] = FIELDS, bom: bool = False
) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "cases.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))
    return path


def read(path: Path, **kwargs: object) -> list:  # type: ignore[type-arg]
    rows, _digest = read_case_file(path, max_bytes=10**7, today=TODAY, **kwargs)  # type: ignore[arg-type]
    return rows


def problems(path: Path) -> list[str]:
    with pytest.raises(IntakeError) as caught:
        read(path)
    return [str(e) for e in caught.value.errors]


def test_good_file_with_bom(tmp_path: Path) -> None:
    rows = read(write_csv(tmp_path, [GOOD, ORG], bom=True))
    assert [r.debtor_id for r in rows] == ["11010519491231002X", "91350100M000100Y43"]
    first = rows[0]
    assert first.case_number == "（2024）豫0185执1234号"
    assert (first.principal, first.judgment_interest, first.costs) == (10_000_000, 250_050, 0)
    assert first.line == 2


def test_jsonl_with_numbers_and_strings(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    same = {"principal": 100000.25}
    lines = [json.dumps(GOOD | same), "", json.dumps(ORG | same, ensure_ascii=False)]
    path.write_text("\n".join(lines), encoding="utf-8")
    rows = read(path)
    assert rows[0].principal == 10_000_025
    assert rows[1].line == 3


def test_every_bad_field_is_reported_with_its_line(tmp_path: Path) -> None:
    bad = GOOD | {
        "case_number": "(2024)豫0185执12A4号",
        "filed_on": "2024-02-30",
        "judge": "=cmd|' /C calc'!A0",
        "principal": "-5",
        "judgment_interest": "12.345",
        "debtor_kind": "robot",
    }
    found = problems(write_csv(tmp_path, [GOOD, bad]))
    assert found == [
        "line 3, case_number: '(2024)豫0185执12A4号' is not a case number: the sequence must be digits",
        "line 3, filed_on: '2024-02-30' is not a real date",
        "line 3, judge: starts like a spreadsheet formula (= + - @): not accepted",
        "line 3, principal: '-5' is negative: an amount must be 0 or more",
        "line 3, judgment_interest: '12.345' is not an amount: "
        "write yuan with at most 2 decimals, e.g. 1234.50",
        "line 3, debtor_kind: 'robot' is not a debtor kind: use person or organisation",
    ]


def test_cross_field_rules(tmp_path: Path) -> None:
    rows = [
        GOOD | {"filed_on": "2027-01-01", "case_number": "(2027)豫0185执1号"},
        GOOD | {"case_number": "(2023)豫0185执2号"},
        GOOD | {"case_number": "(2024)豫0185执3号", "performance_due_on": "2024-05-01"},
        GOOD | {"case_number": "(2024)豫0185执4号", "debtor_kind": "organisation"},
        GOOD | {"case_number": "(2024)豫0185执5号", "principal": "0"},
    ]
    found = problems(write_csv(tmp_path, rows))
    assert found == [
        "line 2, filed_on: 2027-01-01 is in the future",
        "line 3, case_number: the year 2023 does not match filed_on 2024-03-01",
        "line 4, performance_due_on: 2024-05-01 is after filed_on 2024-03-01: enforcement is filed only once "
        "the performance deadline has passed",
        "line 5, debtor_id: the credit code's check character is wrong (GB 32100)",
        "line 6, principal: the amount must be more than 0",
    ]


def test_rows_of_one_case_must_agree_and_pairs_not_repeat(tmp_path: Path) -> None:
    rows = [GOOD, ORG | {"principal": "99999"}, GOOD, ORG | {"debtor_name": "别的公司", "principal": "99999"}]
    found = problems(write_csv(tmp_path, rows))
    assert "line 3, principal: differs from line 2 for the same case number" in found
    assert "line 4, debtor_id: repeats the case-debtor pair of line 2" in found
    assert "line 5, debtor_name: differs from line 3 for the same debtor_id" in found


def test_header_problems(tmp_path: Path) -> None:
    fields = (*tuple(f for f in FIELDS if f != "costs"), "notes")
    found = problems(write_csv(tmp_path, [GOOD], fields=fields))
    assert found == ["line 1, header: missing column(s): costs", "line 1, header: unknown column(s): notes"]


def test_wrong_cell_count(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [GOOD])
    path.write_text(path.read_text(encoding="utf-8") + "a,b,c\n", encoding="utf-8")
    assert problems(path) == ["line 3, row: has 3 cells, the header has 11"]


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [GOOD])
    path.write_bytes(path.read_bytes() + "（2024）豫0185执9号,GBK\n".encode("gbk"))
    assert problems(path) == ["line 3, file: is not UTF-8 text: save it as UTF-8 (in Excel: 'CSV UTF-8')"]


def test_empty_and_oversized_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert problems(empty) == ["file, file: is empty: it needs a header line with " + ", ".join(FIELDS)]
    header_only = write_csv(tmp_path, [])
    assert problems(header_only) == ["file, file: has no case rows"]
    with pytest.raises(IntakeError, match="problem") as caught:
        read_case_file(write_csv(tmp_path, [GOOD]), max_bytes=100, today=TODAY)
    assert "more than the limit of 100" in str(caught.value.errors[0])


def test_jsonl_structure_problems(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"case_number": 1}\n[1, 2]\n{broken\n' + json.dumps(GOOD | {"extra": 1}) + "\n")
    found = problems(path)
    assert found[0].startswith("line 1, row: missing field(s): filed_on, judge")
    assert found[1:] == [
        "line 2, row: must be a JSON object",
        "line 3, row: is not valid JSON: Expecting property name enclosed in double quotes",
        "line 4, row: unknown field(s): extra",
    ]


def test_errors_never_echo_ids_or_names(tmp_path: Path) -> None:
    bad = GOOD | {"debtor_id": "11010519491231002Y", "debtor_name": "=HYPERLINK(1)"}
    text = " ".join(problems(write_csv(tmp_path, [bad])))
    assert "11010519491231002" not in text and "HYPERLINK" not in text
