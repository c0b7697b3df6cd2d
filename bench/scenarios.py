"""The scenarios of issue #7, each: fixtures (untimed, once per server), per-round data (the same
bytes for both servers), an untimed per-run preparation, the timed run, and a check of a sample of
responses (status, length, digest or bytes).

A run returns a `Measure`; the driver adds CPU time, peak RSS and wall time around it.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import registry as reg
from . import tools
from .client import Conn, HTTPError, expect
from .registry import Blob

MiB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    large: int = 256 * MiB
    chunk: int = 16 * MiB
    small_count: int = 2000
    small_size: int = 4096
    ci_images: int = 50
    ci_unique: int = 1 * MiB        # two unique layers per image
    ci_shared: int = 4 * MiB        # three shared base layers (mounted)
    tags: int = 1000
    repos: int = 1000
    seconds: float = 5.0            # duration of each rate run (wrk/ab)
    pulls_per_client: int = 3       # pull-large: whole-blob GETs per client
    range_size: int = 1 * MiB
    # before each timed run of a scenario that creates files: sync, then wait this long (see
    # bench/runner.py's settle: what one server deleted must not slow the next one's creates)
    settle: float = 5.5


QUICK = Sizes(large=8 * MiB, chunk=1 * MiB, small_count=100, ci_images=8, ci_unique=16 << 10,
              ci_shared=64 << 10, tags=50, repos=50, seconds=1.0, pulls_per_client=2, range_size=256 << 10,
              settle=0.0)


@dataclass
class Measure:
    value: float                     # in the scenario's unit, higher is better
    ops: int                         # operations completed in the timed part
    seconds: float                   # timed part
    latency_ms: dict[str, float] = field(default_factory=dict)
    verified: int = 0                # responses checked beyond the status (digest, bytes, length)
    failed: int = 0                  # must be 0 for a valid run
    client: str = "python"           # load generator
    client_threads: int = 1          # how many cores the client can use at most
    extra: dict[str, Any] = field(default_factory=dict)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    s = sorted(samples)

    def at(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] * 1000.0
    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": s[-1] * 1000.0}


async def pool(base_url: str, concurrency: int, jobs: Iterable[Any],
               work: Callable[[Conn, Any], Awaitable[None]]) -> list[float]:
    """Run `work(conn, job)` for every job on `concurrency` keep-alive connections; latencies (s)."""
    it = iter(jobs)
    latencies: list[float] = []

    async def worker() -> None:
        c = Conn(base_url)
        try:
            for job in it:
                t = time.perf_counter()
                await work(c, job)
                latencies.append(time.perf_counter() - t)
        finally:
            c.close()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


class Fixtures:
    """Content pushed once per server, before round 1 (untimed)."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.large = Blob.of(os.urandom(sizes.large))
        rnd = random.Random(7)
        self.layers = [Blob.of(rnd.randbytes(rnd.randint(4 << 10, 64 << 10))) for _ in range(5)]
        self.config = reg.config_blob("app")
        self.app = reg.image_manifest(self.config, self.layers)
        self.tiny_config = reg.config_blob("tiny")
        self.tiny_layer = Blob.of(b"tiny layer\n")
        self.tiny = reg.image_manifest(self.tiny_config, [self.tiny_layer])
        self.tag_names = [f"t{i:05d}" for i in range(sizes.tags)]
        # "a-cat/…" sorts before every other repository the bench creates, so the first page of
        # 1000 (`?n=`) is exactly these on both servers whatever the push scenarios added.
        self.repo_names = [f"a-cat/r{i:05d}" for i in range(sizes.repos)]
        self.done: dict[str, set[str]] = {}

    async def ensure(self, url: str, what: str) -> None:
        done = self.done.setdefault(url, set())
        if what in done:
            return
        c = Conn(url)
        try:
            if what == "large":
                await reg.upload(c, "bench/large", self.large)
            elif what == "app":
                for b in [self.config, *self.layers]:
                    await reg.upload(c, "bench/app", b)
                await reg.put_manifest(c, "bench/app", "latest", self.app)
            elif what in ("tags", "catalog"):
                if "tiny" not in done:
                    await reg.upload(c, "bench/tags", self.tiny_config)
                    await reg.upload(c, "bench/tags", self.tiny_layer)
                    await reg.put_manifest(c, "bench/tags", "latest", self.tiny)
                    done.add("tiny")
                if what == "tags":
                    await pool(url, 16, self.tag_names,
                               lambda c2, t: reg.put_manifest(c2, "bench/tags", t, self.tiny))
                else:
                    async def make_repo(c2: Conn, name: str) -> None:
                        await reg.mount(c2, name, self.tiny_config.digest, "bench/tags")
                        await reg.mount(c2, name, self.tiny_layer.digest, "bench/tags")
                        await reg.put_manifest(c2, name, "v1", self.tiny)
                    await pool(url, 16, self.repo_names, make_repo)
        finally:
            c.close()
        done.add(what)


class Scenario(ABC):
    """Targets: `target` is fastreg / Distribution 3.1.1 (higher is better; None: no ratio
    target); `ceiling_target` a fraction of the scenario's `ceiling` (a key of the per-round
    ceilings: "get_rps", "head_rps", "recv_sha256_MBps"); `p99_target` the most fastreg's p99 may
    be as a fraction of Distribution's; `rss_target` the most a worker's peak RSS may be (MiB)."""

    name = ""
    unit = ""
    target: float | None = None
    ceiling: str | None = None
    ceiling_target: float | None = None
    p99_target: float | None = None
    rss_target: float | None = None
    what = ""
    fixtures: tuple[str, ...] = ()
    rate = False                # request-rate scenario (latency percentiles charted)
    creates = False             # creates files on the server: settled before (runner.settle)

    def __init__(self, fx: Fixtures) -> None:
        self.fx = fx
        self.sizes = fx.sizes

    def round_data(self, rnd: int) -> Any:
        return None

    async def prepare(self, url: str, rnd: int, data: Any) -> None:
        for f in self.fixtures:
            await self.fx.ensure(url, f)

    @abstractmethod
    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        ...


def _fresh_large(base: bytes, rnd: int) -> Blob:
    """The large blob with a round-specific first block: new digest, same size, no new randomness."""
    buf = bytearray(base)
    buf[:64] = hashlib.sha512(f"round {rnd} {time.time_ns()}".encode()).digest()
    return Blob.of(buf)


class PushLarge(Scenario):
    name, unit = "push-large", "MB/s"
    ceiling, ceiling_target, rss_target = "recv_sha256_MBps", 0.90, 100.0
    what = "monolithic upload (POST + PUT ?digest=) of the large blob"
    creates = True

    def round_data(self, rnd: int) -> Any:
        return None

    async def prepare(self, url: str, rnd: int, data: Any) -> None:
        self.blob = _fresh_large(self.fx.large.data, rnd)   # a new digest for every run

    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        c = Conn(url)
        try:
            t = time.perf_counter()
            await reg.upload(c, f"push/large-{tag}", self.blob)
            dt = time.perf_counter() - t
            r = expect(await c.request("HEAD", f"/v2/push/large-{tag}/blobs/{self.blob.digest}"), 200,
                       what="HEAD pushed blob")
            if int(r.header("content-length") or -1) != self.blob.size:
                raise HTTPError(f"pushed blob has length {r.header('content-length')}")
        finally:
            c.close()
        return Measure(self.blob.size / dt / 1e6, 1, dt, verified=1)


class PushChunked(PushLarge):
    name, unit = "push-chunked", "MB/s"
    ceiling, ceiling_target, rss_target = "recv_sha256_MBps", 0.90, None
    what = "the large blob in chunked PATCHes (Content-Range), then PUT ?digest="

    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        c = Conn(url)
        try:
            t = time.perf_counter()
            await reg.upload_chunked(c, f"push/chunked-{tag}", self.blob, self.sizes.chunk)
            dt = time.perf_counter() - t
            expect(await c.request("HEAD", f"/v2/push/chunked-{tag}/blobs/{self.blob.digest}"), 200,
                   what="HEAD pushed blob")
        finally:
            c.close()
        return Measure(self.blob.size / dt / 1e6, 1, dt, verified=1,
                       extra={"chunks": -(-self.blob.size // self.sizes.chunk)})


class PushSmall(Scenario):
    name, unit, target = "push-small", "blobs/s", 3.0
    what = "distinct 4 KiB blobs (POST + PUT ?digest= each), concurrency 32"
    creates = True

    def round_data(self, rnd: int) -> Any:
        return [Blob.of(os.urandom(self.sizes.small_size)) for _ in range(self.sizes.small_count)]

    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        repo = f"push/small-{tag}"
        t = time.perf_counter()
        lat = await pool(url, 32, data, lambda c, b: reg.upload(c, repo, b))
        dt = time.perf_counter() - t
        c = Conn(url)
        try:     # sample: the last blobs are there with their digest
            for b in data[-8:]:
                r = expect(await c.request("GET", f"/v2/{repo}/blobs/{b.digest}"), 200, what="GET small")
                if reg.sha256(r.body) != b.digest:
                    raise HTTPError("small blob served with wrong bytes")
        finally:
            c.close()
        return Measure(len(data) / dt, len(data), dt, percentiles(lat), verified=8)


@dataclass
class CIImage:
    repo: str
    unique: list[Blob]
    config: Blob
    manifest: Blob


class CIPush(Scenario):
    name, unit, target = "ci-push", "images/s", 3.0
    what = "images × 5 layers (3 shared base layers mounted), HEAD before upload, concurrency 8"
    creates = True
    concurrency = 8

    def round_data(self, rnd: int) -> Any:
        shared = [Blob.of(os.urandom(self.sizes.ci_shared)) for _ in range(3)]
        images = []
        for i in range(max(self.sizes.ci_images, 2 * self.concurrency)):
            unique = [Blob.of(os.urandom(self.sizes.ci_unique)) for _ in range(2)]
            config = reg.config_blob(f"r{rnd}-img{i}")
            images.append(CIImage(f"img{i:04d}", unique, config, reg.image_manifest(config, shared + unique)))
        return shared, images

    async def prepare(self, url: str, rnd: int, data: Any) -> None:
        shared, _ = data
        self.base = f"ci/r{rnd}-{time.time_ns() % 10**8}/base"   # fresh namespace per run
        c = Conn(url)
        try:
            for b in shared:
                await reg.upload(c, self.base, b)
        finally:
            c.close()

    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        shared, images = data
        ns = self.base.rsplit("/", 1)[0]
        counts = {"head": 0, "mount": 0, "upload": 0}

        async def push(c: Conn, img: CIImage) -> None:
            repo = f"{ns}/{img.repo}"
            for b in shared:
                counts["head"] += 1
                if not await reg.blob_exists(c, repo, b.digest):
                    counts["mount"] += 1
                    await reg.mount(c, repo, b.digest, self.base)
            for b in [*img.unique, img.config]:
                counts["head"] += 1
                if not await reg.blob_exists(c, repo, b.digest):
                    counts["upload"] += 1
                    await reg.upload(c, repo, b)
            await reg.put_manifest(c, repo, "v1", img.manifest)

        t = time.perf_counter()
        lat = await pool(url, self.concurrency, images, push)
        dt = time.perf_counter() - t
        c = Conn(url)
        try:
            for img in images[-3:]:
                await reg.get_manifest(c, f"{ns}/{img.repo}", "v1", img.manifest)
        finally:
            c.close()
        return Measure(len(images) / dt, len(images), dt, percentiles(lat), verified=3, extra=counts)


class RateScenario(Scenario):
    rate = True
    connections = 64
    request_timeout = 10.0      # wrk counts a slower answer as a failure

    @abstractmethod
    def path(self) -> str:
        ...

    def headers(self) -> list[str]:
        return []

    @abstractmethod
    async def check(self, c: Conn) -> None:
        ...

    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        res = await asyncio.to_thread(tools.wrk, url + self.path(), "get.lua", self.headers(),
                                      self.connections, self.sizes.seconds, 2, self.request_timeout)
        return await self._finish(url, res, "wrk", 2)

    async def _finish(self, url: str, res: tools.LoadResult, client: str, threads: int) -> Measure:
        c = Conn(url)
        n = 0
        try:
            for _ in range(5):
                await self.check(c)
                n += 1
        finally:
            c.close()
        return Measure(res.rate, res.requests, res.seconds, res.latency_ms, verified=n, failed=res.failed,
                       client=client, client_threads=threads, extra={"bytes": res.bytes})


class PullManifest(RateScenario):
    name, unit = "pull-manifest", "req/s"
    ceiling, ceiling_target, p99_target = "get_rps", 0.85, 1 / 3
    what = "GET manifest by tag (OCI Accept), concurrency 64"
    fixtures = ("app",)

    def path(self) -> str:
        return "/v2/bench/app/manifests/latest"

    def headers(self) -> list[str]:
        return [f"Accept: {reg.OCI_MANIFEST}"]

    async def check(self, c: Conn) -> None:
        await reg.get_manifest(c, "bench/app", "latest", self.fx.app)


class HeadBlob(RateScenario):
    name, unit = "head-blob", "req/s"
    ceiling, ceiling_target, p99_target = "head_rps", 0.85, 1 / 3
    what = "HEAD an existing blob, concurrency 64 (ab: wrk cannot do HEAD)"
    fixtures = ("app",)

    def path(self) -> str:
        return f"/v2/bench/app/blobs/{self.fx.layers[0].digest}"

    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        res = await asyncio.to_thread(tools.ab_head, url + self.path(), self.connections, self.sizes.seconds)
        return await self._finish(url, res, "ab", 2)

    async def check(self, c: Conn) -> None:
        b = self.fx.layers[0]
        r = expect(await c.request("HEAD", self.path()), 200, what="HEAD blob")
        if int(r.header("content-length") or -1) != b.size or r.header("docker-content-digest") != b.digest:
            raise HTTPError(f"HEAD blob: length {r.header('content-length')} "
                            f"digest {r.header('docker-content-digest')}")


class PullRange(RateScenario):
    name, unit, target = "pull-range", "req/s", 3.5
    what = "1 MiB ranges at random offsets of the large blob, concurrency 16"
    fixtures = ("large",)
    connections = 16

    def path(self) -> str:
        return f"/v2/bench/large/blobs/{self.fx.large.digest}"

    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        span = min(self.sizes.range_size, self.sizes.large)
        res = await asyncio.to_thread(tools.wrk, url + self.path(), "range.lua", [str(self.sizes.large), str(span)],
                                      self.connections, self.sizes.seconds)
        m = await self._finish(url, res, "wrk", 2)
        m.extra["MB/s"] = res.bytes / res.seconds / 1e6
        return m

    async def check(self, c: Conn) -> None:
        span = min(self.sizes.range_size, self.sizes.large)
        start = random.randrange(0, self.sizes.large - span + 1)
        r = expect(await c.request("GET", self.path(), headers={"Range": f"bytes={start}-{start + span - 1}"}),
                   206, what="GET range")
        if r.body != bytes(memoryview(self.fx.large.data)[start:start + span]):
            raise HTTPError(f"range {start}+{span}: wrong bytes ({len(r.body)} received)")


class TagsList(RateScenario):
    name, unit, target = "tags-list", "req/s", 20.0
    what = "GET /tags/list of a repository with 1,000 tags, concurrency 16"
    fixtures = ("tags",)
    connections = 16

    def path(self) -> str:
        return "/v2/bench/tags/tags/list"

    async def check(self, c: Conn) -> None:
        r = expect(await c.request("GET", self.path()), 200, what="tags list")
        tags = orjson.loads(r.body)["tags"]
        if sorted(tags) != sorted([*self.fx.tag_names, "latest"]):
            raise HTTPError(f"tags list: {len(tags)} tags, expected {len(self.fx.tag_names) + 1}")


class Catalog(RateScenario):
    name, unit, target = "catalog", "req/s", 20.0
    what = "GET /v2/_catalog?n=<repos> over 1,000 repositories, concurrency 16"
    fixtures = ("catalog",)
    connections = 16

    def path(self) -> str:
        return f"/v2/_catalog?n={len(self.fx.repo_names)}"

    async def check(self, c: Conn) -> None:
        r = expect(await c.request("GET", self.path()), 200, what="catalog")
        repos = orjson.loads(r.body)["repositories"]
        if repos != self.fx.repo_names:
            raise HTTPError(f"catalog: {len(repos)} repositories, first {repos[:2]}")


class PullLarge(Scenario):
    name, unit, target = "pull-large", "MB/s", 1.05
    what = "GET the large blob, 4 clients, every response's length checked, digest of a sample"
    fixtures = ("large",)

    async def run(self, url: str, rnd: int, data: Any, tag: str) -> Measure:
        path = f"/v2/bench/large/blobs/{self.fx.large.digest}"
        size = self.fx.large.size

        async def get(c: Conn, _: int) -> None:
            r = expect(await c.request("GET", path, keep_body=False), 200, what="GET large")
            if r.length != size or int(r.header("content-length") or -1) != size:
                raise HTTPError(f"GET large: {r.length} bytes, Content-Length {r.header('content-length')}")

        n = 4 * self.sizes.pulls_per_client
        t = time.perf_counter()
        lat = await pool(url, 4, range(n), get)
        dt = time.perf_counter() - t
        return Measure(n * size / dt / 1e6, n, dt, percentiles(lat), verified=n)

    async def verify_digest(self, url: str) -> None:
        c = Conn(url)
        try:
            r = expect(await c.request("GET", f"/v2/bench/large/blobs/{self.fx.large.digest}"), 200)
            if reg.sha256(r.body) != self.fx.large.digest:
                raise HTTPError("large blob served with wrong bytes")
        finally:
            c.close()

    async def prepare(self, url: str, rnd: int, data: Any) -> None:
        await super().prepare(url, rnd, data)
        await self.verify_digest(url)     # the whole blob, hashed, once per run (untimed)


ALL: list[type[Scenario]] = [PushLarge, PushChunked, PushSmall, CIPush, PullManifest, HeadBlob, PullLarge,
                             PullRange, TagsList, Catalog]
BY_NAME = {s.name: s for s in ALL}
