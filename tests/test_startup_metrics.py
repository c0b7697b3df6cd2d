"""Process metrics for granian's main process and every worker, and the build info, on the
debug listener's /metrics (a real server, scraped over HTTP)."""
from __future__ import annotations

import os
import platform
import re
from typing import Any

import httpx
import pytest

from fastreg import __version__
from tests.conftest import FastregServer, free_port

SAMPLE = re.compile(r'^(process_\w+)\{pid="(\d+)",role="(main|worker)"\} (\S+)$')


def _children(pid: int) -> set[int]:
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                out.add(int(name))
    return out


@pytest.mark.parametrize(("workers", "env", "engine"),
                         [(2, {}, "compiled"), (1, {"FASTREG_NO_EXTENSIONS": "1"}, "pure")])
def test_process_metrics_for_every_worker_and_build_info(fastreg_factory: Any, workers: int, env: dict[str, str],
                                                         engine: str) -> None:
    dport = free_port()
    srv: FastregServer = fastreg_factory({"http": {"debug": {"addr": f"127.0.0.1:{dport}",
                                                             "prometheus": {"enabled": True}}}},
                                         env=env, workers=workers)
    assert srv.proc is not None
    text = httpx.get(f"http://127.0.0.1:{dport}/metrics", timeout=30).text
    samples: dict[str, dict[tuple[int, str], float]] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            samples.setdefault(m.group(1), {})[(int(m.group(2)), m.group(3))] = float(m.group(4))
    main = srv.proc.pid            # `python -m fastreg serve` is granian's main process
    worker_pids = _children(main)
    expected = {(main, "main")} | {(p, "worker") for p in worker_pids}
    assert len(worker_pids) == workers
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                 "process_open_fds", "process_start_time_seconds"):
        assert set(samples.get(name, {})) == expected, (name, samples.get(name), expected)
    for (pid, _), rss in samples["process_resident_memory_bytes"].items():
        with open(f"/proc/{pid}/status") as f:
            vmrss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        assert 0.5 * vmrss < rss < 2 * vmrss
    for (_pid, _), fds in samples["process_open_fds"].items():
        assert fds >= 3
    assert (f'fastreg_build_info{{engine="{engine}",python="{platform.python_version()}",'
            f'version="{__version__}"}} 1.0') in text.splitlines()
