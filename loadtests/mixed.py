"""Both storms at once: CI runners pushing while nodes pull (1 runner for every 4 nodes).

    locust -f loadtests/mixed.py --headless -u 50 -r 10 -t 30s --host http://127.0.0.1:5000
"""
from __future__ import annotations

from ci_push_storm import CIRunner, push_base  # noqa: F401  (locust collects the users and hooks)
from pull_storm import Node, push_release  # noqa: F401

CIRunner.weight = 1
Node.weight = 4
