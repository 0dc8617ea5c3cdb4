"""Building blocks shared by the request and response schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from service.validation import normalise_nhs_number, normalise_postcode


class RequestModel(BaseModel):
    """Request bodies: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Email = Annotated[
    str, StringConstraints(max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
]
Phone = Annotated[str, StringConstraints(min_length=6, max_length=20, pattern=r"^\+?[0-9 ()-]+$")]
NhsNumber = Annotated[
    str,
    StringConstraints(min_length=10, max_length=12, pattern=r"^[0-9][0-9 -]{8,10}[0-9]$"),
    AfterValidator(normalise_nhs_number),
]
Postcode = Annotated[
    str,
    StringConstraints(min_length=5, max_length=8, pattern=r"^[A-Za-z0-9 ]+$"),
    AfterValidator(normalise_postcode),
]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
