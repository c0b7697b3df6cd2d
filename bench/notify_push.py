"""How much do durable webhook events cost a push?  (a measurement, not a test)

Starts fastreg twice on the same machine, without and with a webhook endpoint (a receiver on
127.0.0.1), pushes the same number of small images (config + 2 layers + manifest = 4 events)
from CONCURRENCY threads, and prints the wall time and images/s of each.

    python bench/notify_push.py [IMAGES] [CONCURRENCY] [WORKERS] [BATCH] [ROUNDS]
"""
from __future__ import annotations

import multiprocessing as mp
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.notify.conftest import Receiver
from tests.support.registry_client import make_layer, make_manifest, push_manifest
from tests.support.server import make_fastreg


class RemoteReceiver:
    """The test receiver in a process of its own, so it does not take the client's CPU."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.count = ctx.Value("i", 0)
        self.ready = ctx.Event()
        self.receiver = Receiver()
        self.proc = ctx.Process(target=_serve, args=(self.receiver.port, self.count, self.ready), daemon=True)
        self.proc.start()
        self.ready.wait(30)

    @property
    def url(self) -> str:
        return self.receiver.url

    @property
    def delivered(self) -> int:
        return int(self.count.value)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join()


def _serve(port: int, count: Any, ready: Any) -> None:
    r = Receiver(port=port)
    r.start()
    ready.set()
    while True:
        time.sleep(0.05)
        count.value = len(r.events)


def run(images: int, concurrency: int, workers: int, receiver: RemoteReceiver | None, batch: int = 1) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"log": {"level": "error"}}
        if receiver is not None:
            cfg["notifications"] = {"endpoints": [{"name": "bench", "url": receiver.url}]}
            cfg["fastreg"] = {"notifications": {"allowprivate": True, "outbox": f"{tmp}/outbox", "batch": batch}}
        base = receiver.delivered if receiver is not None else 0
        srv = make_fastreg(Path(tmp), cfg, workers=workers)
        srv.start()
        try:
            manifests = [make_manifest(layers=[make_layer(1024), make_layer(1024)]) for _ in range(images)]

            def push(i: int) -> None:
                with httpx.Client(base_url=srv.url, timeout=60) as c:
                    push_manifest(c, f"bench/r{i % 8}", manifests[i], f"t{i}")

            with ThreadPoolExecutor(concurrency) as pool:       # warm-up
                list(pool.map(push, range(min(8, images))))
            t = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(push, range(8, images)))
            elapsed = time.perf_counter() - t
            if receiver is not None:
                t = time.perf_counter()
                deadline = time.monotonic() + 60
                while receiver.delivered - base < images * 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
                print(f"  delivered {receiver.delivered - base}/{images * 4} events, "
                      f"the last {time.perf_counter() - t:.2f}s after the last push")
            return elapsed
        finally:
            srv.stop()


def main() -> None:
    images = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    n = images - 8
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    receiver = RemoteReceiver()
    try:
        for label, rcv in [("without notifications", None), ("with notifications", receiver)] * rounds:
            secs = run(images, concurrency, workers, rcv, batch)
            print(f"{label:24s} {n} images ({n * 4} requests with events) in {secs:.2f}s: "
                  f"{n / secs:.1f} images/s")
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
