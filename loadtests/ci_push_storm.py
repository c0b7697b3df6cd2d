"""CI push storm: many CI jobs pushing images that share base layers.

Each user is a CI runner: for every build it HEADs each layer, mounts the shared base layers from
the base image's repository, uploads its own layers and config, PUTs the manifest by version tag,
then moves `latest` to it (a tag update). Bounded: LOADTEST_MAX_ITERATIONS builds per user and
locust's `-t`.

    locust -f loadtests/ci_push_storm.py --headless -u 20 -r 5 -t 30s --host http://127.0.0.1:5000
"""
from __future__ import annotations

import itertools
import os

from common import (
    MAX_ITERATIONS,
    Blob,
    CheckFailed,
    SetupClient,
    config,
    manifest,
    push_blob,
    put_manifest,
    upload,
)
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

LAYER = int(os.environ.get("LOADTEST_LAYER_BYTES", str(256 << 10)))
BASE_REPO = "storm/base"
BASE_LAYERS = [Blob.of(os.urandom(LAYER * 4)) for _ in range(3)]   # shared by every image
_ids = itertools.count()


@events.test_start.add_listener
def push_base(environment, **_kw) -> None:
    """The base image every build starts FROM, pushed once before the storm."""
    if isinstance(environment.runner, WorkerRunner):
        return      # pushed once, by the master (or the single local process)
    c = SetupClient(environment.host)
    try:
        for b in BASE_LAYERS:
            upload(c, BASE_REPO, b)
    finally:
        c.close()


class CIRunner(FastHttpUser):
    wait_time = between(0.0, 0.2)

    def on_start(self) -> None:
        self.job = next(_ids)
        self.builds = 0

    @task
    def build_and_push(self) -> None:
        if self.builds >= MAX_ITERATIONS:
            raise StopUser()
        self.builds += 1
        repo = f"storm/app{self.job % 10}"          # ten projects, several runners each
        own = [Blob.of(os.urandom(LAYER)) for _ in range(2)]
        cfg = config(f"{self.job}-{self.builds}")
        m = manifest(cfg, BASE_LAYERS + own)
        try:
            for b in BASE_LAYERS:
                push_blob(self.client, repo, b, source=BASE_REPO)
            for b in [*own, cfg]:
                push_blob(self.client, repo, b)
            put_manifest(self.client, repo, f"build-{self.job}-{self.builds}", m)
            put_manifest(self.client, repo, "latest", m)
        except CheckFailed:
            pass    # already counted as a failure in locust's statistics
