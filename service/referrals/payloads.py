"""Stored payload shapes and their upcasters: yesterday's referral is readable tomorrow.

A payload is stored exactly as it was accepted, with the version of its shape. When the request
shape changes (a field renamed, a code list split), bump `CURRENT_PAYLOAD_VERSION` and register
one function for the step from the previous version; readers then see every stored payload in
the current shape, and nothing stored is ever rewritten or re-validated.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

CURRENT_PAYLOAD_VERSION = 1

# version n -> the function that turns a shape-n payload into shape n + 1.
UPCASTERS: dict[int, Upcaster] = {}


def upcaster(from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the step from `from_version` to `from_version + 1`."""

    def register(step: Upcaster) -> Upcaster:
        if from_version in UPCASTERS:
            raise ValueError(f"an upcaster from payload version {from_version} already exists")
        UPCASTERS[from_version] = step
        return step

    return register


def upcast(payload: Payload, version: int, current: int | None = None) -> Payload:
    """`payload` (stored in shape `version`) in the current shape.

    A version newer than this code (written by a newer release during a rolling update) is
    returned as it is: response models ignore fields they do not know.
    """
    target = CURRENT_PAYLOAD_VERSION if current is None else current
    if version >= target:
        return payload
    # Steps may edit in place; the stored value (maybe cached by the caller) stays untouched.
    shaped = copy.deepcopy(payload)
    for step_from in range(version, target):
        step = UPCASTERS.get(step_from)
        if step is None:
            raise LookupError(f"no upcaster from payload version {step_from}")
        shaped = step(shaped)
    return shaped
