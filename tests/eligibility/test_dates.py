"""Calendar-month arithmetic, worked by hand from pathway.md's rule."""

from __future__ import annotations

from datetime import date

import pytest

from eligibility import is_under_months, reaches_months

D = date


@pytest.mark.parametrize(
    ("birth", "months", "expected"),
    [
        pytest.param(D(2024, 2, 29), 24, D(2026, 3, 1), id="leap-day-24m-no-29-feb-2026"),
        pytest.param(D(2024, 2, 29), 48, D(2028, 2, 29), id="leap-day-48m-leap-year-again"),
        pytest.param(D(2024, 2, 29), 12, D(2025, 3, 1), id="leap-day-12m"),
        pytest.param(D(2024, 1, 31), 1, D(2024, 3, 1), id="31-jan-1m-leap-year"),
        pytest.param(D(2023, 1, 31), 1, D(2023, 3, 1), id="31-jan-1m-common-year"),
        pytest.param(D(2024, 3, 31), 1, D(2024, 5, 1), id="31-mar-1m-april-has-30"),
        pytest.param(D(2024, 5, 31), 1, D(2024, 7, 1), id="31-may-1m-june-has-30"),
        pytest.param(D(2024, 8, 31), 6, D(2025, 3, 1), id="31-aug-6m-february"),
        pytest.param(D(2024, 3, 31), 18, D(2025, 10, 1), id="31-mar-18m-september"),
        pytest.param(D(2024, 1, 31), 24, D(2026, 1, 31), id="31-jan-24m-day-exists"),
        pytest.param(D(2024, 11, 30), 3, D(2025, 3, 1), id="30-nov-3m-february"),
        pytest.param(D(2024, 1, 29), 1, D(2024, 2, 29), id="29-jan-1m-leap-feb-has-29"),
        pytest.param(D(2025, 1, 29), 1, D(2025, 3, 1), id="29-jan-1m-common-feb"),
        pytest.param(D(2024, 12, 15), 1, D(2025, 1, 15), id="year-rollover"),
        pytest.param(D(2024, 12, 31), 2, D(2025, 3, 1), id="31-dec-2m-rollover-february"),
        pytest.param(D(2024, 6, 10), 0, D(2024, 6, 10), id="zero-months-is-birth-day"),
        pytest.param(D(2020, 7, 4), 48, D(2024, 7, 4), id="48m-plain"),
    ],
)
def test_reaches_months(birth: date, months: int, expected: date) -> None:
    assert reaches_months(birth, months) == expected


@pytest.mark.parametrize(
    ("birth", "as_of", "under"),
    [
        pytest.param(D(2024, 1, 15), D(2026, 1, 14), True, id="day-before-24m"),
        pytest.param(D(2024, 1, 15), D(2026, 1, 15), False, id="on-24m-day"),
        pytest.param(D(2024, 2, 29), D(2026, 2, 28), True, id="leap-day-birth-28-feb"),
        pytest.param(D(2024, 2, 29), D(2026, 3, 1), False, id="leap-day-birth-1-mar"),
        pytest.param(D(2026, 3, 10), D(2026, 3, 10), True, id="born-today"),
    ],
)
def test_is_under_24_months(birth: date, as_of: date, under: bool) -> None:
    assert is_under_months(birth, 24, as_of) is under


def test_negative_months_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        reaches_months(D(2024, 1, 1), -1)
