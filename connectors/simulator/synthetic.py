"""Synthetic but valid identities and cases, for the sample file, the tests and the simulators.

Every value is made from a seeded `random.Random`, so the same seed gives the same data. The IDs pass the
GB 11643 / GB 32100 checks; they belong to nobody.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass

from models.values import CREDIT_CODE_ALPHABET, credit_code_check_char, resident_id_check_digit


@dataclass(frozen=True, slots=True)
class Court:
    code: str  # court code in case numbers, e.g. 豫0185
    region: str  # the 6-digit division code of its county
    name: str


COURTS: tuple[Court, ...] = (
    Court("豫0185", "410185", "登封市人民法院"),
    Court("京0105", "110105", "北京市朝阳区人民法院"),
    Court("蒙0524", "150524", "开鲁县人民法院"),
    Court("赣0302", "360302", "萍乡市安源区人民法院"),
    Court("粤0106", "440106", "广州市天河区人民法院"),
)

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰德文斌宇浩然子轩梓涵欣怡"
_FIRM_WORDS = ("华鑫", "中原", "嵩山", "瑞丰", "恒通", "金石", "宏达", "永盛", "天成", "汇川", "博远", "安泰")
_FIRM_TRADES = ("建材", "商贸", "置业", "物流", "机械", "食品", "科技", "建筑工程", "农业开发", "纺织")
_JUDGES = ("李法官", "王法官", "赵法官", "陈法官", "刘法官", "孙法官")


def resident_id(rng: random.Random, region: str | None = None, born: dt.date | None = None) -> str:
    region = region or rng.choice(COURTS).region
    born = born or dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 50))
    first17 = f"{region}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + resident_id_check_digit(first17)


def credit_code(rng: random.Random, region: str | None = None) -> str:
    region = region or rng.choice(COURTS).region
    body = "".join(rng.choice(CREDIT_CODE_ALPHABET) for _ in range(9))
    first17 = "91" + region + body  # 9: market regulation, 1: enterprise
    return first17 + credit_code_check_char(first17)


def person_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


def firm_name(rng: random.Random, court: Court) -> str:
    city = court.name[:2]
    return f"{city}{rng.choice(_FIRM_WORDS)}{rng.choice(_FIRM_TRADES)}有限公司"


def _case_fields(rng: random.Random, court: Court, sequence: int, today: dt.date) -> dict[str, str]:
    """The case columns of an intake row: a case filed in the last 400 days at `court`."""
    filed = today - dt.timedelta(days=rng.randrange(1, 400))
    due = filed - dt.timedelta(days=rng.randrange(15, 120))
    principal = rng.choice((rng.randrange(3_000, 100_000), rng.randrange(100_000, 3_000_000)))
    interest = rng.choice((0, 0, principal * rng.randrange(1, 12) // 100))
    return {
        "case_number": f"({filed.year}){court.code}执{sequence}号",
        "filed_on": filed.isoformat(),
        "judge": rng.choice(_JUDGES),
        "applicant": person_name(rng) if rng.random() < 0.6 else firm_name(rng, court),
        "principal": f"{principal}.{rng.choice(('00', '50', str(rng.randrange(10, 100))))}",
        "judgment_interest": str(interest) if interest else "",
        "costs": str(rng.choice((0, 120, 860, 2_350))),
        "performance_due_on": due.isoformat(),
    }


def sample_case_rows(seed: int, cases: int, today: dt.date) -> list[dict[str, str]]:
    """Rows in the intake format: `cases` cases over the sample courts, one to three debtors each."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    used: set[str] = set()
    sequences = {c.code: rng.randrange(100, 900) for c in COURTS}
    for _ in range(cases):
        court = rng.choice(COURTS)
        sequences[court.code] += rng.randrange(1, 40)
        case = _case_fields(rng, court, sequences[court.code], today)
        for _ in range(rng.choice((1, 1, 2, 3))):
            person = rng.random() < 0.7
            make_id = resident_id if person else credit_code
            debtor_id = make_id(rng, court.region)
            while debtor_id in used:  # one ID, one debtor: redraw the rare collision
                debtor_id = make_id(rng, court.region)
            used.add(debtor_id)
            name = person_name(rng) if person else firm_name(rng, court)
            kind = "person" if person else "organisation"
            rows.append(case | {"debtor_kind": kind, "debtor_id": debtor_id, "debtor_name": name})
    return rows


def case_rows_for(
    debtors: Sequence[tuple[str, str, str, str]], seed: int, today: dt.date
) -> list[dict[str, str]]:
    """Intake rows that put the given (kind, id, name, court code) debtors into cases, one to three per case
    at their court: the case file that matches a simulated world."""
    rng = random.Random(seed)
    courts = {c.code: c for c in COURTS}
    by_court: dict[str, list[tuple[str, str, str, str]]] = {}
    for debtor in debtors:
        by_court.setdefault(debtor[3], []).append(debtor)
    rows: list[dict[str, str]] = []
    for code, group in sorted(by_court.items()):
        # Numbered apart from the sample cases (sequences below 10,000), so both files import together.
        sequence, i = 10_000, 0
        while i < len(group):
            size = rng.choice((1, 1, 1, 2, 3))
            sequence += 1
            case = _case_fields(rng, courts[code], sequence, today)
            for kind, id_number, name, _ in group[i : i + size]:
                rows.append(case | {"debtor_kind": kind, "debtor_id": id_number, "debtor_name": name})
            i += size
    return rows
