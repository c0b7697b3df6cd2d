"""The old import path of tests/support/direct_push.py, kept so modules written against it still
import; new code imports tests.support.direct_push."""
from tests.support.direct_push import *  # noqa: F403
