"""Cluster pull storm: hundreds of nodes pulling the same new multi-arch image at once.

Before the storm, one multi-arch image (an OCI index of linux/amd64 and linux/arm64 manifests,
four layers each, two shared) is pushed as `storm/release:v1`. Each user is a node: it resolves the
tag (index), picks its platform manifest by digest, then pulls the config and every layer,
checking every body against its digest. Bounded: LOADTEST_MAX_ITERATIONS pulls per node and `-t`.

    locust -f loadtests/pull_storm.py --headless -u 50 -r 10 -t 30s --host http://127.0.0.1:5000
"""
from __future__ import annotations

import json
import os
import random

from common import (
    MAX_ITERATIONS,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    CheckFailed,
    SetupClient,
    config,
    get,
    index,
    manifest,
    put_manifest,
    upload,
)
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

REPO = "storm/release"
LAYER = int(os.environ.get("LOADTEST_LAYER_BYTES", str(1 << 20)))
SHARED = [Blob.of(os.urandom(LAYER)), Blob.of(os.urandom(LAYER // 4))]
PLATFORMS: dict[str, tuple[Blob, list[Blob], Blob]] = {}
for arch in ("amd64", "arm64"):
    layers = SHARED + [Blob.of(os.urandom(LAYER // 2)), Blob.of(os.urandom(LAYER // 8))]
    cfg = config(arch)
    PLATFORMS[arch] = (cfg, layers, manifest(cfg, layers))
INDEX = index([(arch, m) for arch, (_, _, m) in PLATFORMS.items()])


@events.test_start.add_listener
def push_release(environment, **_kw) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return      # pushed once, by the master (or the single local process)
    c = SetupClient(environment.host)
    try:
        for cfg, layers, m in PLATFORMS.values():
            for b in [cfg, *layers]:
                upload(c, REPO, b)
            put_manifest(c, REPO, m.digest, m)
        put_manifest(c, REPO, "v1", INDEX, OCI_INDEX)
    finally:
        c.close()


class Node(FastHttpUser):
    wait_time = between(0.0, 0.5)

    def on_start(self) -> None:
        self.arch = random.choice(list(PLATFORMS))
        self.pulls = 0

    @task
    def pull(self) -> None:
        if self.pulls >= MAX_ITERATIONS:
            raise StopUser()
        self.pulls += 1
        try:
            body = get(self.client, f"/v2/{REPO}/manifests/v1", "GET index by tag", INDEX.digest,
                       accept=f"{OCI_INDEX}, {OCI_MANIFEST}")
            entry = next(m for m in json.loads(body)["manifests"] if m["platform"]["architecture"] == self.arch)
            cfg, layers, m = PLATFORMS[self.arch]
            if entry["digest"] != m.digest:
                raise CheckFailed("index points at an unexpected manifest")
            get(self.client, f"/v2/{REPO}/manifests/{m.digest}", "GET manifest by digest", m.digest,
                accept=OCI_MANIFEST)
            get(self.client, f"/v2/{REPO}/blobs/{cfg.digest}", "GET config", cfg.digest)
            for b in layers:
                get(self.client, f"/v2/{REPO}/blobs/{b.digest}", "GET layer", b.digest)
        except CheckFailed:
            pass
