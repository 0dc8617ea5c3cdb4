"""Schemathesis hooks for `make contract` against a live deployment (see schemathesis.toml).

The same repairs as the test suite's (tests/contract/acceptance.py), with "today" the real date
in the service's default time zone, so that positive_data_acceptance judges only what the
document says. Not imported by the test suite: these hooks are global.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from tests.contract.acceptance import london_today, make_acceptable


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, **kwargs: Any) -> None:
    make_acceptable(case, london_today())
