"""Validated value types: case numbers, resident IDs, credit codes, amounts, dates; and masking.

Pure Python: no Prefect, HTTP or SQL. Every parser either returns a canonical value or raises
`InvalidValue`, whose message names the field and the rule and never echoes personal data.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from models.supervision import bureau_today

#: The largest amount accepted anywhere: 100 billion yuan, far above any single case, far below int64.
MAX_AMOUNT_FEN = 100_000_000_000 * 100


class InvalidValue(ValueError):
    """A value that breaks a rule. `field` names the field, `rule` says what is wrong, in plain words."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(field, rule)
        self.field = field
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


# --- case numbers -------------------------------------------------------------------------------------

#: Enforcement case-type words (案件类型代字) of the 2016 case-number rules, longest first so that the
#: regular expression prefers 执恢 over 执.
CASE_TYPE_WORDS: tuple[str, ...] = (
    "执恢",
    "执保",
    "执异",
    "执复",
    "执监",
    "执协",
    "执他",
    "执配",
    "执请",
    "执督",
    "执",
)

#: Province abbreviations that open a court code (法院代字), e.g. 豫 in 豫0185; 兵 for the Xinjiang
#: Production and Construction Corps courts.
PROVINCE_WORDS = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼兵"

_CASE_NUMBER = re.compile(
    r"^[（(](?P<year>[^）)]*)[）)]"
    r"(?P<court>最高法|[" + PROVINCE_WORDS + r"][0-9]{0,4})"
    r"(?P<type>" + "|".join(CASE_TYPE_WORDS) + r")"
    r"(?P<seq>[^号]*)号$"
)


@dataclass(frozen=True, slots=True)
class CaseNumber:
    """A case number (案号), kept in its canonical form with full-width brackets."""

    year: int
    court: str
    case_type: str
    sequence: int

    def __str__(self) -> str:
        return f"（{self.year}）{self.court}{self.case_type}{self.sequence}号"

    @classmethod
    def parse(cls, text: str, field: str = "case_number") -> CaseNumber:
        raw = text.strip()
        match = _CASE_NUMBER.match(raw)
        if match is None:
            raise InvalidValue(field, f"{raw!r} is not a case number: {_case_number_problem(raw)}")
        year_text, seq_text = match["year"], match["seq"]
        if not (year_text.isascii() and year_text.isdigit() and len(year_text) == 4):
            raise InvalidValue(field, f"{raw!r} is not a case number: the year must be four digits")
        year = int(year_text)
        if not 1990 <= year <= 2100:
            raise InvalidValue(field, f"{raw!r} is not a case number: the year {year} is out of range")
        if not (seq_text.isascii() and seq_text.isdigit()):
            raise InvalidValue(field, f"{raw!r} is not a case number: the sequence must be digits")
        sequence = int(seq_text)
        if sequence == 0 or len(seq_text) > 7:
            raise InvalidValue(field, f"{raw!r} is not a case number: the sequence must be 1 to 9999999")
        return cls(year=year, court=match["court"], case_type=match["type"], sequence=sequence)


def _case_number_problem(raw: str) -> str:
    """Say which part of a malformed case number is wrong, for the error message."""
    if not raw:
        return "it is empty"
    if raw[0] not in "（(":
        return "it must start with the year in brackets, e.g. (2024)豫0185执1234号"
    close = min((i for i in (raw.find("）"), raw.find(")")) if i > 0), default=-1)
    if close < 0:
        return "the bracket after the year is not closed"
    if not raw.endswith("号"):
        return "it must end with 号"
    rest = raw[close + 1 :]
    if not rest or (rest[0] not in PROVINCE_WORDS and not rest.startswith("最高法")):
        return "the court code must start with a province abbreviation such as 豫 or 京"
    code = re.match(r"[0-9０-９OoＯｏ]*", rest[1:])
    digits = code[0] if code else ""
    if not rest.startswith("最高法") and (not digits.isascii() or not digits.isdigit() or len(digits) > 4):
        hint = " (the letter O where a zero belongs?)" if any(c in "OoＯｏ" for c in digits) else ""
        return (
            f"the court code is a province abbreviation and up to four digits, e.g. 豫0185, not "
            f"{rest[0]}{digits}{hint}"
        )
    return "the case-type word must be one of " + " ".join(CASE_TYPE_WORDS) + " after the court code"


# --- debtor identities --------------------------------------------------------------------------------


class DebtorKind(StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"

    @classmethod
    def parse(cls, text: str, field: str = "debtor_kind") -> DebtorKind:
        value = text.strip().lower()
        aliases = {"person": cls.PERSON, "自然人": cls.PERSON, "个人": cls.PERSON}
        aliases |= {k: cls.ORGANISATION for k in ("organisation", "organization", "法人", "单位")}
        if value not in aliases:
            raise InvalidValue(field, f"{text.strip()!r} is not a debtor kind: use person or organisation")
        return aliases[value]


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
#: First two digits of a resident ID: the province-level division (GB/T 2260).
_PROVINCE_CODES = frozenset(
    ("11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
     "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
     "81", "82", "83")
)  # fmt: skip


def resident_id_check_digit(first17: str) -> str:
    """GB 11643 check character for the first 17 digits of a resident ID."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def parse_resident_id(text: str, field: str = "debtor_id", today: dt.date | None = None) -> str:
    """An 18-character resident ID, upper-cased; checks the province, birth date and check digit."""
    value = text.strip().upper()
    if len(value) != 18:
        raise InvalidValue(field, f"a resident ID has 18 characters, this one has {len(value)}")
    if not (value[:17].isascii() and value[:17].isdigit()) or value[17] not in "0123456789X":
        raise InvalidValue(field, "a resident ID is 17 digits and a check digit (0-9 or X)")
    if value[:2] not in _PROVINCE_CODES:
        raise InvalidValue(field, "a resident ID must start with a province code (GB/T 2260)")
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidValue(field, "the birth date in the resident ID is not a real date") from None
    if born.year < 1900 or born > (today or bureau_today()):
        raise InvalidValue(field, "the birth date in the resident ID is out of range")
    if resident_id_check_digit(value[:17]) != value[17]:
        raise InvalidValue(field, "the resident ID's check digit is wrong (GB 11643)")
    return value


CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CODE_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))


def credit_code_check_char(first17: str) -> str:
    """GB 32100 check character for the first 17 characters of a unified social credit code."""
    total = sum(CREDIT_CODE_ALPHABET.index(c) * w for c, w in zip(first17, _CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def parse_credit_code(text: str, field: str = "debtor_id", exceptions: Iterable[str] = frozenset()) -> str:
    """An 18-character unified social credit code, upper-cased.

    A few early pilot codes fail the check character and are still legal: those are accepted only when
    they are on the reviewed `exceptions` list (see `clerk/data/credit_code_exceptions.txt`).
    """
    value = text.strip().upper()
    if len(value) != 18:
        raise InvalidValue(field, f"a credit code has 18 characters, this one has {len(value)}")
    bad = [c for c in value if c not in CREDIT_CODE_ALPHABET]
    if bad:
        raise InvalidValue(field, "a credit code uses only 0-9 and A-Y without I, O, S, V, Z (GB 32100)")
    if not (value[2:8].isdigit()):
        raise InvalidValue(field, "characters 3-8 of a credit code are the region code and must be digits")
    if credit_code_check_char(value[:17]) != value[17] and value not in set(exceptions):
        raise InvalidValue(field, "the credit code's check character is wrong (GB 32100)")
    return value


def parse_debtor_id(
    kind: DebtorKind,
    text: str,
    field: str = "debtor_id",
    exceptions: Iterable[str] = frozenset(),
    today: dt.date | None = None,
) -> str:
    if kind is DebtorKind.PERSON:
        return parse_resident_id(text, field, today=today)
    return parse_credit_code(text, field, exceptions=exceptions)


# --- amounts and dates --------------------------------------------------------------------------------

_AMOUNT = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")


def parse_yuan(text: str | int | Decimal, field: str, *, allow_zero: bool = True) -> int:
    """An amount in yuan (at most 2 decimals, non-negative, bounded) as integer fen."""
    if isinstance(text, bool) or not isinstance(text, str | int | Decimal):
        raise InvalidValue(field, "an amount must be written as a number of yuan, e.g. 1234.50")
    raw = str(text).strip()
    if len(raw) > 20:  # 100,000,000,000.00 has 15 characters; a longer text is no amount (and not echoed)
        raise InvalidValue(field, f"is {len(raw):,} characters long: not an amount of yuan")
    if raw.startswith("-"):
        raise InvalidValue(field, f"{raw!r} is negative: an amount must be 0 or more")
    if not _AMOUNT.match(raw):
        raise InvalidValue(
            field, f"{raw!r} is not an amount: write yuan with at most 2 decimals, e.g. 1234.50"
        )
    try:
        fen = int(Decimal(raw) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern above admits only valid decimals
        raise InvalidValue(field, f"{raw!r} is not an amount") from None
    if fen > MAX_AMOUNT_FEN:
        raise InvalidValue(field, f"{raw!r} is above the largest amount accepted (100,000,000,000 yuan)")
    if fen == 0 and not allow_zero:
        raise InvalidValue(field, "the amount must be more than 0")
    return fen


def parse_date(text: str, field: str) -> dt.date:
    """A calendar date written YYYY-MM-DD."""
    raw = str(text).strip()
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
        raise InvalidValue(field, f"{raw!r} is not a date: write YYYY-MM-DD")
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidValue(field, f"{raw!r} is not a real date") from None
    if value.year < 1990:
        raise InvalidValue(field, f"{raw!r} is before 1990")
    return value


def format_yuan(fen: int) -> str:
    """Fen as yuan with thousands separators: 123456789 -> '1,234,567.89'."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


# --- masking ------------------------------------------------------------------------------------------


def mask_id(value: str) -> str:
    """A resident ID or credit code with only its first 4 and last 4 characters shown."""
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_account(value: str) -> str:
    """An account, certificate or plate number with only its last 4 characters shown, after four stars
    whatever its length (`****0048`): the length would tell a 16-digit card from a 19-digit one."""
    return "****" + value[-4:] if len(value) > 4 else "*" * len(value)


def mask_name(value: str, kind: DebtorKind = DebtorKind.PERSON) -> str:
    """A person's name with only its first character shown; organisations' names are public record."""
    if kind is DebtorKind.ORGANISATION:
        return value
    return value[:1] + "*" * max(len(value) - 1, 1)


# Anything in free text that looks like a resident ID or credit code (18 characters, digits and capitals,
# at least 6 digits in a row) or an account number (10 or more digits): masked by `scrub_personal_data`.
_ID_LIKE = re.compile(r"(?<![0-9A-Z])(?=[0-9A-Z]{18}(?![0-9A-Z]))(?=[0-9A-Z]*[0-9]{6})[0-9A-Z]{18}")
_ACCOUNT_LIKE = re.compile(r"(?<![0-9])[0-9]{10,}(?![0-9])")


#: The clerk's own idempotency keys (uuid4 hex, 32 digits) and public keys' ids (`models.proof.key_id`, 16):
#: a run of digits inside one is not an account number. A key id of 16 decimal digits (one key in about
#: 1,900) cannot be told from a card number and is masked like one.
_OWN_KEY = re.compile(r"(?=[0-9a-f]*[a-f])(?:[0-9a-f]{32}|[0-9a-f]{16})")


#: Both patterns above need six digits in a row: text without them is returned as it is, at one scan.
_SIX_DIGITS = re.compile(r"[0-9]{6}")


def scrub_text(value: str) -> str:
    if not _SIX_DIGITS.search(value) or _OWN_KEY.fullmatch(value):
        return value
    value = _ID_LIKE.sub(lambda m: mask_id(m.group()), value)
    return _ACCOUNT_LIKE.sub(lambda m: mask_account(m.group()), value)


def scrub_personal_data(value: object) -> object:
    """Mask ID- and account-like strings anywhere in a JSON-like value (a last line of defence for audit
    payloads and operator-facing text; callers mask what they know to be personal in the first place)."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):  # numbers and None as they are, without a call each (audit payloads)
        return {k: v if type(v) in _PLAIN else scrub_personal_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [v if type(v) in _PLAIN else scrub_personal_data(v) for v in value]
    return value


_PLAIN = frozenset({int, float, bool, type(None)})


def iso_date(day: dt.date | None) -> str | None:
    """A day as ISO 8601 (what the audit trail and results keep), None for none."""
    return day.isoformat() if day else None
