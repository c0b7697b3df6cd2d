"""Run the scenarios against both servers in alternation, round after round, with accounting."""
from __future__ import annotations

import asyncio
import hashlib
import mmap
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import registry as reg
from .ceiling import GetCeiling, capture, receive_ceilings
from .scenarios import BY_NAME, Fixtures, HeadBlob, PullManifest, Scenario, Sizes
from .servers import (
    CLK_TCK,
    FASTREG,
    Server,
    checkout_commit,
    cpu_seconds,
    is_fastreg,
    make_server,
    peak_rss_mib,
    reset_peak_rss,
)

NCPU = os.cpu_count() or 1


def client_cpu() -> float:
    """CPU seconds of this process plus its reaped children (wrk, ab)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def machine_busy() -> float:
    """CPU seconds this machine's processes and kernel used (/proc/stat: user, nice, system, irq,
    softirq; idle, iowait and steal -- time the hypervisor gave to other guests -- excluded)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / CLK_TCK


def bound_side(client_cores: float, server_cores: float, client_threads: int, machine_cores: float) -> str:
    """Which side ran out of CPU: a client at its thread limit, or the bigger user of a saturated machine.

    "neither" means the machine had idle CPU (I/O or latency bound); with other sessions on the
    machine, "others" means they held more of the saturated CPU than client and server.
    """
    if client_cores >= 0.9 * min(client_threads, NCPU):
        return "client"
    if machine_cores >= 0.85 * NCPU:
        others = machine_cores - client_cores - server_cores
        if others > max(client_cores, server_cores):
            return "others"
        return "server" if server_cores >= client_cores else "client"
    return "neither"


def write_ceiling(directory: Path, size: int) -> float:
    """MB/s of a plain page-cache write of `size` bytes (1 MiB writes, no fsync) in `directory`."""
    block = os.urandom(1 << 20)
    path = directory / "ceiling.tmp"
    t = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        f.writelines(block for _ in range(max(1, size >> 20)))
    dt = time.perf_counter() - t
    path.unlink()
    return max(1, size >> 20) * (1 << 20) / dt / 1e6


def disk_ceiling(directory: Path, size: int) -> float:
    """MB/s of writing `size` bytes to a new file in `directory` past the page cache (O_DIRECT,
    4 MiB writes) and fsyncing it: what the disk under the data takes, the bound of any upload
    that stores what it receives.  0 where the filesystem refuses O_DIRECT."""
    block = 4 << 20
    path = directory / "disk-ceiling.tmp"
    buf = mmap.mmap(-1, block)                  # page-aligned, as O_DIRECT wants
    buf.write(os.urandom(block))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_DIRECT", 0), 0o600)
    except OSError:
        buf.close()
        return 0.0
    try:
        n = max(1, size // block)
        t = time.perf_counter()
        try:
            for _ in range(n):
                os.write(fd, buf)
            os.fsync(fd)
        except OSError:
            return 0.0
        return n * block / (time.perf_counter() - t) / 1e6
    finally:
        os.close(fd)
        buf.close()
        path.unlink(missing_ok=True)


def settle(seconds: float) -> None:
    """Flush the page cache to disk and wait `seconds`, so no server pays for another's deletes.

    ext4 without a journal (this machine's root filesystem, and a common VM image) skips, when it
    allocates an inode, every inode freed in the last 5 s — in the last 5 minutes while the inode
    table's block is not yet written back — looking each one up in the buffer cache.  The data one
    server's run deleted (an upload session, a removed directory) makes the next run's creates
    slower for minutes: up to a third of the machine's CPU went to that scan in a small-push run.
    A sync writes the inode tables back; 5 s later none of it is recent.  Journaled filesystems
    skip nothing, and lose only the wait."""
    if seconds > 0:
        os.sync()
        time.sleep(seconds)


def filesystem(path: Path) -> dict[str, Any]:
    """The filesystem `path` is on: type, device and mount point from /proc/mounts, and for ext4
    whether it has a journal (a jbd2 entry for its device)."""
    best: tuple[str, str, str, str] = ("", "", "", "")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return {}
    real = os.path.realpath(path)
    for line in mounts:
        dev, mnt, fstype, opts = (line.split() + ["", "", "", ""])[:4]
        mnt = mnt.replace("\\040", " ")
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
            best = (dev, mnt, fstype, opts)
    dev, mnt, fstype, opts = best
    out: dict[str, Any] = {"device": dev, "mount": mnt, "type": fstype}
    if fstype == "ext4":
        out["journal"] = Path(f"/proc/fs/jbd2/{os.path.basename(dev)}-8").exists()
    return out


def describe_fs(fs: dict[str, Any]) -> str:
    if not fs:
        return "unknown filesystem"
    kind = fs["type"] + ({True: " with a journal", False: " without a journal"}.get(fs.get("journal"), ""))
    return f"{kind} ({fs['device']} on {fs['mount']})"


def sha256_ceiling(data: bytes) -> float:
    t = time.perf_counter()
    hashlib.sha256(data).digest()
    return len(data) / (time.perf_counter() - t) / 1e6


@dataclass
class Run:
    scenario: str
    round: int
    server: str
    unit: str
    value: float | None
    ops: int = 0
    seconds: float = 0.0
    wall: float = 0.0
    latency_ms: dict[str, float] | None = None
    verified: int = 0
    failed: int = 0
    client: str = ""
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cores: float = 0.0
    server_cores: float = 0.0
    other_cores: float = 0.0         # CPU used by everything else on the machine meanwhile
    bound: str = ""
    peak_rss_worker_mib: float = 0.0
    extra: dict[str, Any] | None = None
    error: str | None = None


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start_profilers(srv: Server, out: Path, label: str) -> list[subprocess.Popen[bytes]]:
    """py-spy record on every worker of `srv`, collapsed stacks per worker (`python -m
    bench.profile_summary FILE` ranks them; flamegraph.pl or speedscope draw them); stopped by SIGINT."""
    out.mkdir(parents=True, exist_ok=True)
    extra = os.environ.get("BENCH_PYSPY_ARGS", "").split()     # e.g. "--idle" to see waits too
    return [subprocess.Popen(["py-spy", "record", "--nonblocking", "--rate", "200", "--format", "raw", *extra,
                              "-o", str(out / f"{label}-pid{pid}.txt"), "--pid", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in srv.workers()]


def stop_profilers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def measure(sc: Scenario, srv: Server, rnd: int, data: Any, profile_dir: Path | None = None) -> Run:
    tag = f"r{rnd}"
    await sc.prepare(srv.url, rnd, data)
    if sc.creates:
        await asyncio.to_thread(settle, sc.sizes.settle)
    reset_peak_rss(srv.pids())
    label = f"{sc.name}-r{rnd}" if srv.name == FASTREG else f"{srv.name.replace('/', '_')}-{sc.name}-r{rnd}"
    profilers = (start_profilers(srv, profile_dir, label)
                 if profile_dir is not None and is_fastreg(srv.name) else [])
    if profilers:
        await asyncio.sleep(1.0)   # let py-spy attach before the load starts
    c0, s0, m0, w0 = client_cpu(), srv.cpu(), machine_busy(), time.perf_counter()
    try:
        m = await sc.run(srv.url, rnd, data, tag)
        wall = time.perf_counter() - w0
        ccpu, scpu = client_cpu() - c0, srv.cpu() - s0     # before py-spy is reaped (a child)
        mcpu = machine_busy() - m0
    except Exception as exc:  # noqa: BLE001 -- a failed run is recorded, never silently dropped
        return Run(sc.name, rnd, srv.name, sc.unit, None, error=f"{type(exc).__name__}: {exc}",
                   extra={"trace": traceback.format_exc(limit=3), "server_log": srv.log()[-2000:]})
    finally:
        stop_profilers(profilers)
    rss = max((peak_rss_mib(p) for p in srv.workers()), default=0.0)
    cc, sc_, mc = ccpu / wall, scpu / wall, mcpu / wall
    value = m.value if m.failed == 0 else None
    if m.failed:
        m.extra["server_log"] = srv.log()[-2000:]
    return Run(sc.name, rnd, srv.name, sc.unit, value, m.ops, m.seconds, wall, m.latency_ms or None,
               m.verified, m.failed, m.client, ccpu, scpu, cc, sc_, max(0.0, mc - cc - sc_),
               bound_side(cc, sc_, m.client_threads, mc), rss, m.extra or None,
               None if m.failed == 0 else f"{m.failed} failed requests")


def _get_ceiling(fx: Fixtures, src: Server, work: Path) -> GetCeiling:
    """The GET/HEAD ceiling app, answering what `src` (fastreg when it runs) answered."""
    pm, hb = PullManifest(fx), HeadBlob(fx)
    spec = capture(src.url, pm.path(), {"Accept": reg.OCI_MANIFEST}, hb.path())
    ceiling = GetCeiling(spec, work)
    ceiling.start()
    progress(f"started the GET ceiling app on {ceiling.url} (answers captured from {src.name})")
    return ceiling


def measure_get_ceiling(ceiling: GetCeiling, fx: Fixtures, sizes: Sizes) -> dict[str, float]:
    pm, hb = PullManifest(fx), HeadBlob(fx)
    pids = ceiling.pids()
    c0, s0, w0 = client_cpu(), cpu_seconds(pids), time.perf_counter()
    got = ceiling.measure(pm.path(), pm.headers(), hb.path(), pm.connections, sizes.seconds)
    wall = time.perf_counter() - w0
    got["get_server_cores"] = (cpu_seconds(pids) - s0) / wall
    got["get_client_cores"] = (client_cpu() - c0) / wall
    return got


async def run_all(names: list[str], rounds: int, sizes: Sizes, only: list[str],
                  profile_dir: Path | None = None) -> dict[str, Any]:
    """Every scenario against every server of `only` (fastreg first, then its variants, then the
    reference), in alternation, round after round, with the per-round ceilings."""
    work = Path(tempfile.mkdtemp(prefix="fastreg-bench-"))
    servers: list[Server] = [make_server(n, work) for n in only]
    runs: list[Run] = []
    ceilings: list[dict[str, float]] = []
    get_ceiling: GetCeiling | None = None
    # SIGTERM (a `kill`, a CI timeout) cancels the run like Ctrl-C does, so the servers below are
    # stopped and the data removed instead of left running.
    me = asyncio.current_task()
    if me is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    try:
        fs = filesystem(work)
        progress(f"generating data ({sizes.large >> 20} MiB large blob) in {work}, on {describe_fs(fs)}"
                 + (f"; each push run starts after a sync and {sizes.settle:g} s" if sizes.settle else ""))
        fx = Fixtures(sizes)
        scenarios = [BY_NAME[n](fx) for n in names]
        for srv in servers:
            srv.workdir.mkdir(parents=True)
            srv.prepare()
            srv.start()
            progress(f"started {srv.name} on {srv.url} (pids {srv.pids()})")
        for srv in servers:
            t = time.perf_counter()
            for sc in scenarios:
                for f in sc.fixtures:
                    await fx.ensure(srv.url, f)
            progress(f"fixtures pushed to {srv.name} in {time.perf_counter() - t:.1f}s (untimed)")
        if {"pull-manifest", "head-blob"} & set(names):
            src = next((s for s in servers if s.name == FASTREG), servers[0])
            await fx.ensure(src.url, "app")
            get_ceiling = _get_ceiling(fx, src, work)
        for rnd in range(1, rounds + 1):
            ceil = {"round": rnd, "write_MBps": write_ceiling(work, sizes.large),
                    "sha256_MBps": sha256_ceiling(fx.large.data), "loadavg_1m": os.getloadavg()[0]}
            if {"push-large", "push-chunked"} & set(names):     # what granian itself lets through
                ceil.update(receive_ceilings(fx.large.data))
                ceil["disk_MBps"] = disk_ceiling(work, sizes.large)     # what the disk takes
            if get_ceiling is not None:
                ceil.update(measure_get_ceiling(get_ceiling, fx, sizes))
            ceilings.append(ceil)
            recv = (f", granian receive {ceil['recv_MBps']:.0f} MB/s (+ sha256 {ceil['recv_sha256_MBps']:.0f})"
                    if "recv_MBps" in ceil else "")
            get = (f", GET ceiling {ceil['get_rps']:,.0f} req/s, HEAD ceiling {ceil['head_rps']:,.0f} req/s"
                   if "get_rps" in ceil else "")
            progress(f"round {rnd}/{rounds}: page-cache write {ceil['write_MBps']:.0f} MB/s, "
                     f"sha256 {ceil['sha256_MBps']:.0f} MB/s{recv}{get}, load {ceil['loadavg_1m']:.2f}")
            # alternate who goes first (with three servers: rotate)
            k = (rnd - 1) % len(servers)
            order = servers[k:] + servers[:k]
            for sc in scenarios:
                data = sc.round_data(rnd)
                for srv in order:
                    progress(f"  round {rnd}/{rounds}  {sc.name:<14} -> {srv.name:<12} ...")
                    r = await measure(sc, srv, rnd, data, profile_dir)
                    runs.append(r)
                    if r.error:
                        log = (r.extra or {}).get("server_log", "").strip().splitlines()[-5:]
                        progress(f"    FAILED: {r.error}" + "".join(f"\n      {srv.name} log: {x}" for x in log))
                    else:
                        lat = f"  p99 {r.latency_ms['p99']:.1f} ms" if r.latency_ms and "p99" in r.latency_ms else ""
                        progress(f"    {r.value:,.1f} {r.unit}{lat}  cpu: client {r.client_cores:.2f} / "
                                 f"server {r.server_cores:.2f} / others {r.other_cores:.2f} cores ({r.bound}-bound)  "
                                 f"rss {r.peak_rss_worker_mib:.0f} MiB")
    except BaseException:
        for srv in servers:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        for srv in servers:
            srv.stop()
            srv.release()
        if get_ceiling is not None:
            get_ceiling.stop()
    # The data directories (GBs after the push scenarios) are removed by the caller, after the report.
    here = checkout_commit()
    return {"workdir": str(work), "filesystem": filesystem(work), "settle_s": sizes.settle,
            "runs": [asdict(r) for r in runs], "ceilings": ceilings,
            "servers": [s.name for s in servers],
            # fastreg@REF runs REF; fastreg and its config variants this checkout
            "commits": {s.name: s.commit or here for s in servers
                        if s.commit or (is_fastreg(s.name) and here)},
            "notes": [s.note for s in servers if s.note],
            "scenarios": {sc.name: {"unit": sc.unit, "target": sc.target, "what": sc.what, "rate": sc.rate,
                                    "ceiling": sc.ceiling, "ceiling_target": sc.ceiling_target,
                                    "p99_target": sc.p99_target, "rss_target": sc.rss_target}
                          for sc in scenarios}}
