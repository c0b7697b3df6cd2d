"""fastreg.server.tune_malloc: large frames come from the heap, not from one mmap each."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, sys
from fastreg.server import tune_malloc

def heap() -> int:
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            return hi - lo
    return 0

tuned = tune_malloc() if sys.argv[1] == "tune" else []
before = heap()
held = [bytearray(400 * 1024) for _ in range(40)]       # 40 live frames of 400 KiB, never freed
print(json.dumps({"tuned": tuned, "grown": heap() - before}))
"""


def _probe(mode: str, env: dict[str, str] | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | (env or {})
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_frames_come_from_the_heap_once_tuned() -> None:
    plain, tuned = _probe("plain"), _probe("tune")
    assert plain["tuned"] == [] and plain["grown"] < 4 << 20      # glibc's default: one mmap per frame
    assert tuned["tuned"] == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"]
    assert tuned["grown"] >= 40 * 400 * 1024                       # the heap holds them all


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_users_malloc_environment_wins() -> None:
    got = _probe("tune", {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)})
    assert got["tuned"] == ["MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"]
    assert got["grown"] < 4 << 20                                  # the user's threshold: mmaps again
