"""Building blocks shared by the request and response schemas."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
)

from service.referrals.validation import normalise_nhs_number, normalise_postcode


class RequestModel(BaseModel):
    """Request bodies: unknown fields are an error, never silently dropped."""

    # Strings are validated exactly as sent (lengths and patterns mean what the schema says);
    # names are trimmed only after they have passed.
    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    """Responses: what was stored is served; a field the schema no longer has is dropped, not
    an error. Every field is always sent, so the document marks defaulted fields required."""

    model_config = ConfigDict(extra="ignore", json_schema_serialization_defaults_required=True)


# Whitespace spelt out: `\s` means different sets in JSON Schema's regex dialect (ECMA-262),
# Python and pydantic's Rust engine, so a schema-valid value could be refused (e.g. U+0085).
_SPACES = " \t\n\r\f\v"
_SOME_TEXT = r"[^ \t\n\r\f\v]"  # one character that is not one of _SPACES


def _trim(text: str) -> str:
    # The same spaces as the pattern: str.strip() would also remove characters the pattern
    # counts as text (e.g. U+001C), leaving an empty name that was valid when sent.
    return text.strip(_SPACES)


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=_SOME_TEXT),
    AfterValidator(_trim),
]
Email = Annotated[
    str,
    StringConstraints(
        max_length=254, pattern=r"^[^@ \t\n\r\f\v]{1,64}@[^@ \t\n\r\f\v]+\.[^@ \t\n\r\f\v]+$"
    ),
]
Phone = Annotated[str, StringConstraints(min_length=6, max_length=20, pattern=r"^\+?[0-9 ()-]+$")]
NhsNumber = Annotated[
    str,
    StringConstraints(min_length=10, max_length=12, pattern=r"^[0-9][0-9 -]{8,10}[0-9]$"),
    AfterValidator(normalise_nhs_number),
]
Postcode = Annotated[
    str,
    # Room for stray spaces around a full postcode (normalisation removes them).
    StringConstraints(min_length=5, max_length=12, pattern=r"^[A-Za-z0-9 ]+$"),
    AfterValidator(normalise_postcode),
]
# JSON has real booleans, integers and (as strings) dates: pydantic's lax mode would also take
# 0 or "yes" for a boolean, "6" for an integer and a Unix time for a date, which the schema
# refuses. A safeguarding flag in particular must be an explicit true or false.
JsonBool = Annotated[bool, Strict()]
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _iso_date(value: object) -> object:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


def _rfc3339(value: object) -> object:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-25T09:00:00Z")
    return value


def _plausible_year(moment: date) -> date:
    # Far-off years overflow date arithmetic (time zones, month steps) on the way in.
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return moment


def _whole_number(value: object) -> object:
    # 6.0 is a JSON Schema integer too; "6" and true are not.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


EARLIEST_YEAR, LATEST_YEAR = 1900, 8999
_PLAUSIBLE_YEAR = "(19|[2-8][0-9])[0-9]{2}"  # the same bounds, as the document states them
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
EvaluationDate = Annotated[
    date,
    AfterValidator(_plausible_year),
    WithJsonSchema({"type": "string", "format": "date", "pattern": f"^{_PLAUSIBLE_YEAR}-"}),
]
Weeks = Annotated[int, Field(ge=0, le=520), BeforeValidator(_whole_number)]
DateTimeQuery = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_plausible_year),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": f"^{_PLAUSIBLE_YEAR}-"}),
]

Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
