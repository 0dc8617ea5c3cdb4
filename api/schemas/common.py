"""Building blocks shared by the request and response schemas."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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

# Characters no name or text of ours may hold: C0 controls (NUL, BEL, ESC, and the tab and line
# breaks), DEL, C1 controls, and the bidirectional embeddings, overrides (U+202A-U+202E) and
# isolates (U+2066-U+2069) that make text display in another order than it is stored, so a
# clinician could read something other than what was sent. Written with escapes that mean the
# same code points in ECMA-262, Python and Rust regexes.
_BIDI_CONTROLS = r"\u202a-\u202e\u2066-\u2069"
_CONTROLS = r"\x00-\x1f\x7f-\x9f" + _BIDI_CONTROLS
# The same less tab (\x09), line feed (\x0a) and carriage return (\x0d): free text has lines.
_TEXT_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f" + _BIDI_CONTROLS

# What the OpenAPI document states; the validators below give the reason in words. A name has
# no controls and at least one character that is not a space (the only space it can have).
NAME_PATTERN = f"^ *[^ {_CONTROLS}][^{_CONTROLS}]*$"
FREE_TEXT_PATTERN = f"^[^{_TEXT_CONTROLS}]*$"
_CONTROL = re.compile(f"[{_CONTROLS}]")
_TEXT_CONTROL = re.compile(f"[{_TEXT_CONTROLS}]")
# JSON can spell a lone UTF-16 surrogate (`\ud800`), which is no character and cannot be
# encoded as UTF-8 on the way out. Constrained strings are refused by pydantic itself; free text
# is checked here. Not in the pattern: ECMA-262 without the `u` flag matches UTF-16 code units,
# so excluding surrogates there would also refuse every character beyond U+FFFF (emoji).
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class _DocumentedPattern:
    """States a pattern in the JSON Schema that a validator, not the pattern engine, enforces
    (so that the error can say why in words rather than quote the regex)."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


def _single_line(text: str) -> str:
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters, line breaks or tabs")
    if not text.strip(" "):
        raise ValueError("must not be blank")
    return text


def _free_text(text: str) -> str:
    if _TEXT_CONTROL.search(text):
        raise ValueError("must not contain control characters other than tabs and line breaks")
    if _SURROGATE.search(text):
        raise ValueError("must be valid Unicode text")
    return text


def _trim(text: str) -> str:
    # The same spaces as the pattern: str.strip() would also remove characters the pattern
    # counts as text (e.g. U+001C), leaving an empty name that was valid when sent.
    return text.strip(_SPACES)


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_single_line),
    AfterValidator(_trim),
    _DocumentedPattern(NAME_PATTERN),
]
# Multi-line text written by people (descriptions, notes); give it a max_length where used.
FreeText = Annotated[str, AfterValidator(_free_text), _DocumentedPattern(FREE_TEXT_PATTERN)]
_EMAIL_PART = f"[^@ {_CONTROLS}]"
Email = Annotated[
    str,
    StringConstraints(
        max_length=254, pattern=f"^{_EMAIL_PART}{{1,64}}@{_EMAIL_PART}+\\.{_EMAIL_PART}+$"
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
