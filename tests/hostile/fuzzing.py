"""Hypothesis budgets: bounded in CI, unbounded-ish in the long campaign (`python -m tests.fuzz`).

`HYPOTHESIS_PROFILE=long` gives every fuzz test `LONG_EXAMPLES` examples (the campaign runner
repeats runs with fresh seeds until its time is up); otherwise each test runs the number of
examples it asks for, which keeps the whole fuzz layer to a few seconds of CI time.
"""
from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
LONG_EXAMPLES = 2_000


def budget(ci_examples: int, **kw: Any) -> settings:
    return settings(max_examples=LONG_EXAMPLES if LONG else ci_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], **kw)
