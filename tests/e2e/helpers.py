"""The old import path of tests/support/registry_client.py, kept so modules written against it
still import; new code imports tests.support.registry_client."""
from tests.support.registry_client import *  # noqa: F403
