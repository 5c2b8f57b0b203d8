from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.values import (
    CREDIT_CODE_ALPHABET,
    CaseNumber,
    DebtorKind,
    InvalidValue,
    format_yuan,
    mask_account,
    mask_id,
    mask_name,
    parse_credit_code,
    parse_date,
    parse_resident_id,
    parse_yuan,
    scrub_personal_data,
)
from tests.strategies import credit_codes, fen_amounts, resident_ids

TODAY = dt.date(2026, 11, 23)


class TestCaseNumber:
    @pytest.mark.parametrize(
        "text",
        [
            "(2024)豫0185执1234号",
            "（2024）豫0185执1234号",
            " (2024）豫0185执1234号 ",
            "（2024)豫0185执1234号",
        ],
    )
    def test_both_bracket_widths_give_one_canonical_form(self, text: str) -> None:
        number = CaseNumber.parse(text)
        assert str(number) == "（2024）豫0185执1234号"
        assert (number.year, number.court, number.case_type, number.sequence) == (2024, "豫0185", "执", 1234)

    @pytest.mark.parametrize(
        ("text", "case_type", "court"),
        [
            ("(2025)京0105执恢88号", "执恢", "京0105"),
            ("(2023)粤01执保7号", "执保", "粤01"),
            ("(2022)最高法执监12号", "执监", "最高法"),
        ],
    )
    def test_case_type_words_and_court_codes(self, text: str, case_type: str, court: str) -> None:
        number = CaseNumber.parse(text)
        assert (number.case_type, number.court) == (case_type, court)

    @pytest.mark.parametrize(
        ("text", "rule"),
        [
            ("(2024)豫0185执12A4号", "the sequence must be digits"),
            ("2024豫0185执1234号", "must start with the year in brackets"),
            ("(2024豫0185执1234号", "bracket after the year is not closed"),
            ("(2024)豫0185执1234", "must end with 号"),
            ("(2024)X0185执1234号", "province abbreviation"),
            ("(2024)豫0185民1234号", "case-type word"),
            ("(2025)京O105执10008号", "not 京O105 (the letter O where a zero belongs?)"),
            ("(2025)京01055执1号", "a province abbreviation and up to four digits"),
            ("(2025)京0105X1号", "case-type word"),
            ("(24)豫0185执1234号", "year must be four digits"),
            ("(1899)豫0185执1234号", "out of range"),
            ("(2024)豫0185执0号", "1 to 9999999"),
            ("", "it is empty"),
        ],
    )
    def test_malformed_numbers_name_the_field_and_rule(self, text: str, rule: str) -> None:
        with pytest.raises(InvalidValue) as caught:
            CaseNumber.parse(text)
        assert caught.value.field == "case_number"
        assert rule in str(caught.value)
        assert str(caught.value).startswith("case_number: ")


class TestResidentId:
    def test_known_valid_id(self) -> None:
        # The GB 11643 standard's own example.
        assert parse_resident_id("11010519491231002x", today=TODAY) == "11010519491231002X"

    @given(resident_ids)
    def test_generated_ids_are_valid(self, value: str) -> None:
        assert parse_resident_id(value, today=TODAY) == value

    @given(resident_ids, st.integers(0, 16), st.integers(1, 9))
    def test_any_single_digit_change_is_caught(self, value: str, position: int, delta: int) -> None:
        changed = value[:position] + str((int(value[position]) + delta) % 10) + value[position + 1 :]
        with pytest.raises(InvalidValue) as caught:
            parse_resident_id(changed, today=TODAY)
        assert caught.value.field == "debtor_id"

    @pytest.mark.parametrize(
        ("value", "rule"),
        [
            ("1101051949123100", "18 characters"),
            ("11010519491231002A", "17 digits and a check digit"),
            ("99010519491231002X", "province code"),
            ("110105194902300021", "not a real date"),
            ("110105203001010021", "out of range"),
            ("110105194912310021", "check digit is wrong"),
        ],
    )
    def test_bad_ids(self, value: str, rule: str) -> None:
        with pytest.raises(InvalidValue, match=rule) as caught:
            parse_resident_id(value, today=TODAY)
        assert value not in str(caught.value), "errors never echo an ID"


class TestCreditCode:
    def test_known_valid_code(self) -> None:
        assert parse_credit_code("91350100m000100y43") == "91350100M000100Y43"

    @given(credit_codes)
    def test_generated_codes_are_valid(self, value: str) -> None:
        assert parse_credit_code(value) == value

    @given(credit_codes, st.integers(0, 16), st.integers(1, 30))
    def test_any_single_character_change_is_caught(self, value: str, position: int, delta: int) -> None:
        index = CREDIT_CODE_ALPHABET.index(value[position])
        changed = value[:position] + CREDIT_CODE_ALPHABET[(index + delta) % 31] + value[position + 1 :]
        with pytest.raises(InvalidValue):
            parse_credit_code(changed)

    def test_reviewed_exception_is_accepted_and_only_it(self) -> None:
        pilot = "91350100M000100Y44"  # fails the check character
        with pytest.raises(InvalidValue, match="check character"):
            parse_credit_code(pilot)
        assert parse_credit_code(pilot, exceptions={pilot}) == pilot
        with pytest.raises(InvalidValue, match="check character"):
            parse_credit_code("91350100M000100Y45", exceptions={pilot})

    @pytest.mark.parametrize(
        ("value", "rule"),
        [
            ("9135010", "18 characters"),
            ("91350100M000100I43", "without I, O, S, V, Z"),
            ("913501A0M000100Y43", "region code"),
        ],
    )
    def test_bad_codes(self, value: str, rule: str) -> None:
        with pytest.raises(InvalidValue, match=rule):
            parse_credit_code(value)


class TestAmounts:
    @pytest.mark.parametrize(
        ("text", "fen"), [("0", 0), ("1", 100), ("1234.5", 123450), ("1234.56", 123456), (" 7.05 ", 705)]
    )
    def test_yuan_to_fen(self, text: str, fen: int) -> None:
        assert parse_yuan(text, "principal") == fen

    @pytest.mark.parametrize(
        ("text", "rule"),
        [
            ("-1", "negative"),
            ("1.234", "at most 2 decimals"),
            ("abc", "not an amount"),
            ("1e5", "not an amount"),
            ("1,000", "not an amount"),
            ("", "not an amount"),
            ("100000000001", "largest amount"),
        ],
    )
    def test_bad_amounts(self, text: str, rule: str) -> None:
        with pytest.raises(InvalidValue, match=rule) as caught:
            parse_yuan(text, "principal")
        assert caught.value.field == "principal"

    def test_zero_refused_where_not_allowed(self) -> None:
        with pytest.raises(InvalidValue, match="more than 0"):
            parse_yuan("0.00", "amount", allow_zero=False)

    @given(fen_amounts)
    def test_format_and_parse_round_trip(self, fen: int) -> None:
        assert parse_yuan(format_yuan(fen).replace(",", ""), "x") == fen


class TestDates:
    def test_dates(self) -> None:
        assert parse_date("2024-02-29", "filed_on") == dt.date(2024, 2, 29)
        for bad, rule in (
            ("2023-02-29", "not a real date"),
            ("2024/01/01", "YYYY-MM-DD"),
            ("1989-12-31", "1990"),
        ):
            with pytest.raises(InvalidValue, match=rule):
                parse_date(bad, "filed_on")


class TestMasking:
    def test_masks(self) -> None:
        assert mask_id("11010519491231002X") == "1101**********002X"
        assert mask_account("6222021234567890123") == "****0123"
        assert mask_account("6222021234560123") == "****0123", "the length is not shown"
        assert mask_name("欧阳娜娜") == "欧***"
        assert mask_name("登封华鑫建材有限公司", DebtorKind.ORGANISATION) == "登封华鑫建材有限公司"

    @given(resident_ids, credit_codes, st.text(alphabet="0123456789", min_size=10, max_size=24))
    def test_scrub_hides_ids_codes_and_accounts_anywhere(self, rid: str, code: str, account: str) -> None:
        payload = {
            "note": f"debtor {rid}, firm {code}",
            "accounts": [f"acct:{account}"],
            "amount": 123456789012,
        }
        scrubbed = scrub_personal_data(payload)
        text = str(scrubbed)
        assert rid not in text and code not in text and account not in text
        assert scrubbed["amount"] == 123456789012  # type: ignore[index]

    def test_scrub_leaves_the_clerks_own_keys_alone_but_not_accounts_inside_text(self) -> None:
        key = "3f2a6222021234567890b1c4d5e6f708"  # a uuid4 hex key with a run of 16 digits in it
        assert scrub_personal_data({"key": key}) == {"key": key}
        assert "6222021234567890" not in str(scrub_personal_data(f"key {key}")), "only a key on its own"
        assert scrub_personal_data("62220212345678901234567890123456") != "62220212345678901234567890123456"

    def test_scrub_leaves_a_public_keys_id_alone_but_not_a_card_number(self) -> None:
        # A decision's proof names the key that signed it; its 16 hex digits may hold a run of 10 or more.
        key_id = "d7854640158c9c1b"
        assert scrub_personal_data({"proof": {"by": "key", "key": key_id}}) == {
            "proof": {"by": "key", "key": key_id}
        }
        assert scrub_personal_data("6222021234567890") == "****7890", "16 digits are a card number"
        assert scrub_personal_data("d7854640158c9c1b0") != "d7854640158c9c1b0", "17 hex digits are no key id"

    def test_scrub_leaves_case_numbers_alone(self) -> None:
        assert scrub_personal_data("（2024）豫0185执1234号") == "（2024）豫0185执1234号"
