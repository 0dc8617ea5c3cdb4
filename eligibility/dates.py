"""Calendar-month arithmetic for infant ages, exactly as the pathway defines it."""

from __future__ import annotations

import calendar
from datetime import date


def reaches_months(birth: date, months: int) -> date:
    """Day an infant born on `birth` reaches `months` months.

    The same day of the month `months` months on; where that month has no such day, the first
    day of the following month (29 Feb 2024 + 24 months -> 1 Mar 2026; 31 Jan + 1 -> 1 Mar).
    """
    if months < 0:
        raise ValueError("months must not be negative")
    index = birth.year * 12 + (birth.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    if birth.day <= calendar.monthrange(year, month)[1]:
        return date(year, month, birth.day)
    # Only February and the 30-day months lack a day, so the next month is never in a new year.
    return date(year, month + 1, 1)


def is_under_months(birth: date, months: int, as_of: date) -> bool:
    """True when an infant born on `birth` is under `months` months old on `as_of`."""
    return as_of < reaches_months(birth, months)
