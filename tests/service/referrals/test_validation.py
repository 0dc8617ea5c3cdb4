"""Unit tests of service/validation.py: postcodes, NHS numbers and the date rules."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from service.referrals.validation import date_problems, normalise_nhs_number, normalise_postcode


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        pytest.param("OX4 1AA", "OX4 1AA", id="already-normal"),
        pytest.param("ox41aa", "OX4 1AA", id="lower-compact"),
        pytest.param("  ox4   1aa  ", "OX4 1AA", id="extra-spaces"),
        pytest.param("Ox4\t1aA", "OX4 1AA", id="tab-mixed-case"),
        pytest.param("M11AE", "M1 1AE", id="A9"),
        pytest.param("B338TH", "B33 8TH", id="A99"),
        pytest.param("CR26XH", "CR2 6XH", id="AA9"),
        pytest.param("DN551PT", "DN55 1PT", id="AA99"),
        pytest.param("W1A0AX", "W1A 0AX", id="A9A"),
        pytest.param("ec1a1bb", "EC1A 1BB", id="AA9A"),
        pytest.param("sw1a 1aa", "SW1A 1AA", id="AA9A-spaced"),
        pytest.param("GIR0AA", "GIR 0AA", id="girobank"),
    ],
)
def test_valid_postcodes_are_normalised(raw: str, normalised: str) -> None:
    assert normalise_postcode(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("OX4", id="outward-only"),
        pytest.param("1AA", id="inward-only"),
        pytest.param("OX4 1A", id="short-inward"),
        pytest.param("OX4 AAA", id="inward-without-digit"),
        pytest.param("OX123 1AA", id="three-district-digits"),
        pytest.param("12345", id="digits"),
        pytest.param("QX4 1AA", id="Q-first"),
        pytest.param("V1 1AA", id="V-first"),
        pytest.param("X1 1AA", id="X-first"),
        pytest.param("AI1 1AA", id="I-second"),
        pytest.param("AJ1 1AA", id="J-second"),
        pytest.param("W1Z 1AA", id="Z-third-in-A9A"),
        pytest.param("EC1Z 1BB", id="Z-fourth-in-AA9A"),
        pytest.param("OX4 1CA", id="C-in-inward"),
        pytest.param("OX4 1AI", id="I-in-inward"),
        pytest.param("OX4 1AK", id="K-in-inward"),
        pytest.param("OX4 1AM", id="M-in-inward"),
        pytest.param("OX4 1AO", id="O-in-inward"),
        pytest.param("OX4 1AV", id="V-in-inward"),
        pytest.param("OX4-1AA", id="hyphen"),
        pytest.param("\uff2f\uff384 1AA", id="fullwidth-letters"),
        pytest.param("OX4 1AA X", id="trailing-junk"),
    ],
)
def test_invalid_postcodes_are_refused_without_echoing_them(raw: str) -> None:
    with pytest.raises(ValueError) as refused:
        normalise_postcode(raw)
    if raw.strip():
        assert raw.strip() not in str(refused.value)


# Worked by hand: weights 10..2 on the first nine digits; check = 11 - (sum % 11);
# 11 becomes 0; 10 means the number is invalid.
@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        # 90+36+24+28+42+30+20+27+2 = 299; 299 % 11 = 2; check 9
        pytest.param("9434765919", "9434765919", id="plain"),
        pytest.param("943 476 5919", "9434765919", id="spaced"),
        pytest.param("943-476-5919", "9434765919", id="hyphenated"),
        # 40+0+8+0+12+15+8+3+6 = 92; 92 % 11 = 4; check 7
        pytest.param("4010232137", "4010232137", id="another"),
        # 90+72+56+42+30+20+12+6+2 = 330; 330 % 11 = 0; check 11, read as 0
        pytest.param("9876543210", "9876543210", id="check-11-is-0"),
        # 40 + 2*2 = 44; 44 % 11 = 0; check 0
        pytest.param("4000000020", "4000000020", id="check-0"),
    ],
)
def test_valid_nhs_numbers_pass_modulus_11(raw: str, digits: str) -> None:
    assert normalise_nhs_number(raw) == digits


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("9434765918", id="check-digit-off-by-one"),
        pytest.param("9434765910", id="check-digit-zero"),
        pytest.param("9876543211", id="check-should-be-0"),
        # 40 + 8*2 = 56; 56 % 11 = 1; check 10: no digit can carry it
        pytest.param("4000000080", id="check-10"),
        pytest.param("4000000081", id="check-10-other-last-digit"),
        pytest.param("4000000089", id="check-10-last-digit-9"),
        pytest.param("943476591", id="nine-digits"),
        pytest.param("94347659190", id="eleven-digits"),
        pytest.param("94347659I9", id="letter"),
        pytest.param("943.476.5919", id="dots"),
        pytest.param("", id="empty"),
        pytest.param(
            "\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669", id="arabic-indic"
        ),
    ],
)
def test_invalid_nhs_numbers_are_refused_without_echoing_them(raw: str) -> None:
    with pytest.raises(ValueError) as refused:
        normalise_nhs_number(raw)
    if raw:
        assert raw not in str(refused.value)


def test_swapping_two_digits_is_caught() -> None:
    # The point of Modulus 11: a transposition changes the weighted sum.
    assert normalise_nhs_number("9434765919")
    with pytest.raises(ValueError):
        normalise_nhs_number("4934765919")


AS_OF = date(2030, 1, 15)


def _day(offset: int) -> date:
    return AS_OF + timedelta(days=offset)


@pytest.mark.parametrize(
    ("dob", "due", "consent", "fields"),
    [
        pytest.param(None, None, None, [], id="nothing"),
        pytest.param(_day(0), None, None, [], id="born-on-as-of"),
        pytest.param(_day(-700), None, None, [], id="born-long-ago"),
        pytest.param(_day(1), None, None, ["infant.date_of_birth"], id="born-tomorrow"),
        pytest.param(None, _day(-14), None, [], id="due-14-days-ago"),
        pytest.param(None, _day(-15), None, ["infant.expected_due_date"], id="due-15-days-ago"),
        pytest.param(None, _day(294), None, [], id="due-in-294-days"),
        pytest.param(None, _day(295), None, ["infant.expected_due_date"], id="due-in-295-days"),
        pytest.param(None, _day(0), _day(0), [], id="consent-on-as-of"),
        pytest.param(_day(-3), None, _day(1), ["consent.recorded_on"], id="consent-tomorrow"),
        pytest.param(
            _day(1),
            None,
            _day(1),
            ["infant.date_of_birth", "consent.recorded_on"],
            id="two-problems",
        ),
    ],
)
def test_date_rules_are_relative_to_as_of(
    dob: date | None, due: date | None, consent: date | None, fields: list[str]
) -> None:
    problems = date_problems(
        date_of_birth=dob, expected_due_date=due, consent_recorded_on=consent, as_of=AS_OF
    )
    assert [p.field for p in problems] == fields
    for problem in problems:
        assert AS_OF.isoformat() not in problem.message
