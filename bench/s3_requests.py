"""`python -m bench.s3_requests [--calls N] [--rounds R] [--ops get,put,...] [--profile]`.

What one S3 request costs the registry's process in CPU: the S3 driver (storage.s3) against a
local moto server (started here on 127.0.0.1 and stopped by PID, or ``--endpoint URL``), and N
calls of each driver operation on small objects, timed with ``time.process_time`` of this process
(moto runs in its own process): CPU, not wall time, so the figures hold on a shared machine.

Operations and their S3 requests (counted once per run with an event hook on a separate client):
``get`` get_content of a 1 KiB object (GetObject); ``put`` put_content of 1 KiB (PutObject);
``stat`` of a file (HeadObject); ``list`` of a directory of 5 (ListObjectsV2); ``delete`` of a
file (ListObjectsV2, ListMultipartUploads, DeleteObjects).

``--profile`` samples this process's stack on CPU time (ITIMER_PROF, every 0.5 ms of CPU) while
the calls run and tells where the CPU went, by stage of botocore's request path: each sample is
charged to the innermost frame whose file belongs to a stage (signing, endpoint resolution, ...).
``--json FILE`` writes the rounds' figures (``bench/s3_ab.py`` compares two trees with it).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

OPS = ("get", "put", "stat", "list", "delete")
BUCKET = "bench-s3-requests"
KEYS = {"accesskey": "bench-key", "secretkey": "bench-secret"}
BODY = os.urandom(1024)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- moto ------------------------------------------------------------------------------------

def start_moto(logdir: Path, server: str = "granian") -> tuple[subprocess.Popen[bytes], str]:
    """moto on a free port of 127.0.0.1: under granian (bench/moto_wsgi.py), which keeps connections
    alive as AWS, MinIO and RGW do, or under moto's own server, which closes each after one answer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if server == "granian":
        argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--blocking-threads", "1", "--log-level", "warning", "bench.moto_wsgi:app"]
    else:
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    log = open(logdir / "moto.log", "ab")      # noqa: SIM115 - kept open for the child
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=repo, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto exited with {proc.returncode}: see {logdir / 'moto.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise TimeoutError("moto did not listen within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- the driver ------------------------------------------------------------------------------

def make_driver(endpoint: str, root: str, module: Any = None) -> Any:
    """The driver of fastreg's s3 module, or of `module` (another version of it: bench/s3_ab.py)."""
    if module is None:
        from fastreg.storage.driver.backends import s3 as module
    return module.S3Driver({"bucket": BUCKET, "region": "us-east-1", "regionendpoint": endpoint, "secure": False,
                     "forcepathstyle": True, "rootdirectory": f"/{root}", **KEYS})


async def ensure_bucket(endpoint: str) -> None:
    from fastreg.storage.driver.backends.s3 import _session
    async with _session().create_client("s3", region_name="us-east-1", endpoint_url=endpoint,
                                        aws_access_key_id=KEYS["accesskey"],
                                        aws_secret_access_key=KEYS["secretkey"]) as c:
        try:
            await c.create_bucket(Bucket=BUCKET)
        except Exception as exc:   # already there (a second run on the same --endpoint)
            if "BucketAlready" not in type(exc).__name__ + str(exc):
                raise


async def prepare(d: Any, n: int) -> None:
    """Objects the calls read: one to get and stat, a directory of 5 to list, n to delete."""
    await d.put_content("/get/blob", BODY)
    for i in range(5):
        await d.put_content(f"/dir/f{i}", BODY)
    for i in range(n):
        await d.put_content(f"/del/f{i}", BODY)


def op_call(d: Any, op: str, i: int) -> Any:
    if op == "get":
        return d.get_content("/get/blob")
    if op == "put":
        return d.put_content(f"/put/f{i % 50}", BODY)
    if op == "stat":
        return d.stat("/get/blob")
    if op == "list":
        return d.list("/dir")
    return d.delete(f"/del/f{i}")


async def count_requests(endpoint: str, ops: list[str]) -> dict[str, int]:
    """S3 requests per call of each op, counted by a before-send hook on a client of its own."""
    from fastreg.storage.driver.backends.s3 import _session
    counts: collections.Counter[str] = collections.Counter()

    def hook(**_: Any) -> None:
        counts["n"] += 1

    sess = _session()
    sess.register("before-send.s3", hook)
    try:
        d = make_driver(endpoint, f"count-{uuid.uuid4().hex[:8]}")
        await prepare(d, 1)
        out = {}
        for op in ops:
            counts.clear()
            await op_call(d, op, 0)
            out[op] = counts["n"]
        await d.close()
    finally:
        sess.unregister("before-send.s3", hook)
    return out


async def time_op(d: Any, op: str, n: int, deadline: float, first: int = 0) -> tuple[int, float, float]:
    """(calls made, CPU seconds, wall seconds) of up to n calls of op (numbered from `first`: the
    objects deleted), stopping at deadline."""
    done = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(first, first + n):
        await op_call(d, op, i)
        done += 1
        if time.monotonic() > deadline:
            break
    return done, time.process_time() - c0, time.perf_counter() - w0


# -- profile ---------------------------------------------------------------------------------

# (stage, path fragment) in order: a sample goes to the innermost frame matching any of these.
STAGES: list[tuple[str, str]] = [
    ("user agent", "botocore/useragent.py"), ("timestamps (dateutil)", "/dateutil/"),
    ("signing", "botocore/auth.py"), ("signing", "botocore/signers.py"),
    ("endpoint resolution", "botocore/regions.py"), ("endpoint resolution", "botocore/endpoint_provider.py"),
    ("endpoint resolution", "aiobotocore/regions.py"),
    ("parameter validation", "botocore/validate.py"),
    ("request serialization", "botocore/serialize.py"),
    ("checksums", "botocore/httpchecksum.py"), ("checksums", "aiobotocore/httpchecksum.py"),
    ("response parsing (XML)", "xml/etree"), ("response parsing", "botocore/parsers.py"),
    ("response parsing", "aiobotocore/parsers.py"),
    ("event hooks (dispatch)", "botocore/hooks.py"), ("event hooks (dispatch)", "aiobotocore/hooks.py"),
    ("event handlers", "botocore/handlers.py"), ("event handlers", "aiobotocore/handlers.py"),
    ("retries", "botocore/retries/"), ("retries", "aiobotocore/retries/"), ("retries", "retryhandler.py"),
    ("request objects", "botocore/awsrequest.py"), ("request objects", "aiobotocore/awsrequest.py"),
    ("HTTP (aiohttp + session)", "/aiohttp/"), ("HTTP (aiohttp + session)", "aiobotocore/httpsession.py"),
    ("HTTP (aiohttp + session)", "aiobotocore/_endpoint_helpers.py"), ("HTTP (aiohttp + session)", "/yarl/"),
    ("HTTP (aiohttp + session)", "/multidict/"),
    ("endpoint (send/receive)", "botocore/endpoint.py"), ("endpoint (send/receive)", "aiobotocore/endpoint.py"),
    ("response body", "aiobotocore/response.py"), ("response body", "botocore/response.py"),
    ("client call", "botocore/client.py"), ("client call", "aiobotocore/client.py"),
    ("client call", "botocore/context.py"), ("client call", "aiobotocore/context.py"),
    ("model", "botocore/model.py"),
    ("fastreg driver", "/fastreg/"),
    ("event loop", "/asyncio/"), ("event loop", "selectors.py"),
    ("bench loop", "/bench/"),
]


class Sampler:
    """Stacks of this process's main thread, one every `interval` seconds of its CPU time."""

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self.stacks: collections.Counter[tuple[tuple[str, str], ...]] = collections.Counter()

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        stack = []
        f = frame
        while f is not None:
            stack.append((f.f_code.co_filename, f.f_code.co_name))
            f = f.f_back
        self.stacks[tuple(stack)] += 1

    def __enter__(self) -> Sampler:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)

    @staticmethod
    def stage(stack: tuple[tuple[str, str], ...]) -> str:
        for file, _fn in stack:                      # innermost first
            file = file.replace(os.sep, "/")
            for name, frag in STAGES:
                if frag in file:
                    return name
        return "other"

    def report(self, top: int = 25) -> str:
        total = sum(self.stacks.values()) or 1
        stages: collections.Counter[str] = collections.Counter()
        own: collections.Counter[str] = collections.Counter()
        incl: collections.Counter[str] = collections.Counter()
        for stack, n in self.stacks.items():
            stages[self.stage(stack)] += n
            if stack:
                own[_short(stack[0])] += n
            for fr in {_short(s) for s in stack}:
                incl[fr] += n
        lines = [f"{total} samples (one per timer tick of CPU time)", "", "by stage:"]
        lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in stages.most_common()]
        lines += ["", "own time (top):"]
        lines += [f"  {100 * n / total:5.1f}%  {fr}" for fr, n in own.most_common(top)]
        lines += ["", "inclusive time (top):"]
        lines += [f"  {100 * n / total:5.1f}%  {fr}" for fr, n in incl.most_common(top + 15)]
        return "\n".join(lines)


def _short(frame: tuple[str, str]) -> str:
    file, fn = frame
    for marker in ("/site-packages/", "/lib/python3.11/", "/fastreg/", "/bench/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{fn} ({file})"


# -- main ------------------------------------------------------------------------------------

async def run(args: argparse.Namespace, endpoint: str) -> dict[str, Any]:
    ops = [o for o in args.ops.split(",") if o]
    await ensure_bucket(endpoint)
    reqs = await count_requests(endpoint, ops)
    progress(f"S3 requests per call: {reqs}")
    deadline = time.monotonic() + args.time_limit
    rounds: dict[str, list[dict[str, float]]] = {op: [] for op in ops}
    sampler = Sampler() if args.profile else None
    for r in range(args.rounds):
        d = make_driver(endpoint, f"r{r}-{uuid.uuid4().hex[:8]}")
        await prepare(d, args.calls + args.warmup)
        for op in ops:
            for i in range(args.warmup):                   # client, connections, caches
                await op_call(d, op, args.calls + i)
            if sampler is not None:
                with sampler:
                    calls, cpu, wall = await time_op(d, op, args.calls, deadline)
            else:
                calls, cpu, wall = await time_op(d, op, args.calls, deadline)
            req = calls * reqs[op]
            row = {"calls": calls, "requests": req, "cpu": cpu, "wall": wall,
                   "req_per_cpu_s": req / cpu if cpu else 0.0, "cpu_ms_per_req": 1000 * cpu / req if req else 0.0}
            rounds[op].append(row)
            progress(f"round {r + 1}/{args.rounds} {op:6s}: {calls} calls, {req} requests in {cpu:.3f} CPU-s "
                     f"({wall:.3f} s wall): {row['req_per_cpu_s']:.0f} req/CPU-s, "
                     f"{row['cpu_ms_per_req']:.3f} ms CPU/req")
        await d.close()
        if time.monotonic() > deadline:
            progress("time limit reached")
            break
    summary = {}
    for op, rows in rounds.items():
        if not rows:
            continue
        v = [x["req_per_cpu_s"] for x in rows]
        summary[op] = {"requests_per_call": reqs[op], "req_per_cpu_s_median": statistics.median(v),
                       "min": min(v), "max": max(v),
                       "cpu_ms_per_req_median": statistics.median(x["cpu_ms_per_req"] for x in rows)}
    out = {"rounds": rounds, "summary": summary, "requests_per_call": reqs}
    if sampler is not None:
        out["profile"] = sampler.report()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300, help="calls of each op per round")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto (its bucket is created)")
    ap.add_argument("--server", choices=("granian", "werkzeug"), default="granian",
                    help="what serves moto: granian keeps connections alive, werkzeug closes each")
    ap.add_argument("--moto-only", action="store_true", help="start moto, print its URL, serve until killed")
    ap.add_argument("--time-limit", type=float, default=300.0, help="stop timing after this many seconds")
    ap.add_argument("--profile", action="store_true", help="sample the CPU's stacks and print where it went")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    proc = None
    with tempfile.TemporaryDirectory(prefix="s3req-") as tmp:
        try:
            if args.endpoint:
                endpoint = args.endpoint
            else:
                proc, endpoint = start_moto(Path(tmp), args.server)
                progress(f"moto on {endpoint} (pid {proc.pid}, {args.server})")
                if args.moto_only:
                    print(endpoint, flush=True)
                    proc.wait()
                    return 0
            out = asyncio.run(run(args, endpoint))
        finally:
            if proc is not None:
                stop(proc)
    print(f"{'op':8s} {'req/call':>8s} {'req/CPU-s median (min-max)':>28s} {'ms CPU/req':>10s}")
    for op, s in out["summary"].items():
        print(f"{op:8s} {s['requests_per_call']:8d} {s['req_per_cpu_s_median']:12.0f} "
              f"({s['min']:.0f}-{s['max']:.0f}) {s['cpu_ms_per_req_median']:14.3f}")
    if "profile" in out:
        print()
        print(out["profile"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
