"""External load generators: wrk (GET, ranges; C, multi-threaded) and ab (HEAD; wrk cannot do HEAD:
its parser waits for a body the HEAD response announces but never sends).

Both report requests, errors and latency percentiles; the caller verifies a sample of responses.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"


@dataclass
class LoadResult:
    requests: int          # completed requests with a 2xx/3xx status
    failed: int            # socket errors + non-2xx/3xx responses
    seconds: float
    bytes: int
    latency_ms: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def wrk(url: str, script: str, args: list[str], connections: int, seconds: float, threads: int = 2,
        timeout: float = 10.0) -> LoadResult:
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", f"{max(1, round(timeout))}s", "-s", str(LUA / script), url, "--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout + 60, check=False)
    m = re.search(r"^WRKJSON (.*)$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    d = json.loads(m.group(1))
    errors = d["errors"]
    failed = errors["status"] + errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    lat = {k: v / 1000.0 for k, v in d["latency_us"].items()}
    return LoadResult(d["requests"] - errors["status"], failed, d["duration_us"] / 1e6, d["bytes"], lat)


_AB_PCT = re.compile(r"^\s+(\d+)%\s+(\d+)", re.MULTILINE)


def ab_head(url: str, connections: int, seconds: float, processes: int = 2) -> LoadResult:
    """HEAD with keep-alive from `processes` ab instances (ab is single-threaded) sharing the connections."""
    per = max(1, connections // processes)
    cmds = [["ab", "-q", "-k", "-i", "-c", str(per), "-t", str(max(1, round(seconds))), "-n", "10000000", url]
            for _ in range(processes)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    total = failed = nbytes = 0
    secs = 0.0
    lat: dict[str, float] = {}
    for p in procs:
        out, err = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            raise RuntimeError(f"ab failed ({p.returncode}): {out[-2000:]} {err[-2000:]}")
        complete = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))
        bad = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
        non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
        bad += int(non2xx.group(1)) if non2xx else 0
        total += complete - bad
        failed += bad
        secs = max(secs, float(re.search(r"Time taken for tests:\s+([\d.]+)", out).group(1)))
        nbytes += int(re.search(r"Total transferred:\s+(\d+)", out).group(1))
        pct = {int(a): float(b) for a, b in _AB_PCT.findall(out)}
        for key, p_ in (("p50", 50), ("p90", 90), ("p99", 99)):
            if p_ in pct:
                lat[key] = max(lat.get(key, 0.0), pct[p_])   # ab reports whole milliseconds
    return LoadResult(total, failed, secs, nbytes, lat)
