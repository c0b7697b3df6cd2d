"""How cost grows: `python -m bench.scaling [--quick] [--rounds N] [--servers LIST] [--only a,b]`.

Each row against Distribution 3.1.1 (else Debian's 2.8.2, said loudly) in the same run, servers
alternated round by round:

- tags-list: GET /tags/list of one repository with 1k / 10k / 100k tags (the whole list: fastreg
  pages /tags/list at `fastreg.tags.maxentries`, 10,000 by default, so its servers here are given
  a page as large as the row's list and every answer is checked to be the whole list, with no
  `Link` to a next page);
- catalog: GET /v2/_catalog?n=100, the first page and the last page (`last=`), over 1k / 10k /
  100k repositories (Distribution 3 refuses n above 1000);
- gc: `fastreg gc` and `registry garbage-collect` wall time over 10k / 100k blobs (10 % garbage),
  offline, each on a fresh copy of the same layout; `fastreg check` over the same (Distribution
  has no scrub: its row is fastreg's alone);
- ci-push at concurrency 8 / 32 / 128 (2 × concurrency images, at least 50).

The repositories, tags and blobs are written straight into Distribution's on-disk layout
(bench/layout.py), which both registries serve. Each row reports its cost per unit of work; a
cost that grows faster than its work (per-unit cost up more than 1.5× from the smallest to the
largest size) is marked. Writes scaling.json, scaling.md and scaling.png into
bench/results/scaling-<UTC timestamp>/.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import orjson

from . import layout, report, tools
from .__main__ import FALLBACK, pick_servers
from .client import Conn, HTTPError, expect
from .runner import measure, progress
from .scenarios import QUICK, CIPush, Fixtures, RateScenario, Sizes
from .servers import (
    DIST2,
    DIST3,
    FASTREG,
    REPO_ROOT,
    Fastreg,
    Server,
    distribution3_binary,
    make_server,
    merged,
    registry_config,
)

RESULTS = Path(__file__).resolve().parent / "results"
GROWTH_LIMIT = 1.5
TAGS_PAGE = 10000           # fastreg.tags.maxentries' default


class TagsAt(RateScenario):
    unit, connections = "req/s", 16
    request_timeout = 120.0     # a server whose cost grows with the entries may take seconds

    def __init__(self, fx: Fixtures, n: int) -> None:
        super().__init__(fx)
        self.n, self.name = n, f"tags-list@{n}"

    def path(self) -> str:
        return "/v2/scale/tags/tags/list"

    async def check(self, c: Conn) -> None:
        r = expect(await c.request("GET", self.path()), 200, what="tags list")
        got = orjson.loads(r.body)["tags"]
        if len(got) != self.n or r.headers.get("link"):
            raise HTTPError(f"tags list: {len(got)} tags (Link: {r.headers.get('link')!r}), "
                            f"expected the whole list of {self.n} in one answer")


def repo_names(n: int) -> list[str]:
    return [f"cat/r{i:06d}" for i in range(n)]


class CatalogAt(RateScenario):
    unit, connections = "req/s", 16
    request_timeout = 120.0     # a server whose cost grows with the entries may take seconds
    page = 100

    def __init__(self, fx: Fixtures, n: int, last: bool) -> None:
        super().__init__(fx)
        self.n, self.last = n, last
        self.page = min(self.page, n // 4)
        self.name = f"catalog-{'last' if last else 'first'}-page@{n}"
        names = repo_names(n)
        self.want = names[-self.page:] if last else names[:self.page]
        self.after = names[-self.page - 1] if last else None

    def path(self) -> str:
        return f"/v2/_catalog?n={self.page}" + (f"&last={self.after}" if self.after else "")

    async def check(self, c: Conn) -> None:
        r = expect(await c.request("GET", self.path()), 200, what="catalog")
        got = orjson.loads(r.body)["repositories"]
        if got != self.want:
            raise HTTPError(f"catalog page: {len(got)} names, first {got[:1]}, expected {self.want[:1]}")


class CIPushAt(CIPush):
    def __init__(self, fx: Fixtures, concurrency: int) -> None:
        super().__init__(fx)
        self.concurrency, self.name = concurrency, f"ci-push@c{concurrency}"


def _start_on(name: str, work: Path, root: Path | None, fastreg: dict[str, Any] | None = None) -> Server:
    """A server whose data directory is `root` (shared, read-only use) or its own; `fastreg`:
    settings merged into a fastreg server's `fastreg:` section."""
    srv = make_server(name, work)
    if fastreg and isinstance(srv, Fastreg):
        srv.overrides = merged(srv.overrides or {}, {"fastreg": fastreg})
    srv.workdir.mkdir(parents=True)
    if root is not None:
        (srv.workdir / "data").symlink_to(root)
    srv.start()
    return srv


async def rate_rows(kind: str, sizes_: list[int], names: list[str], rounds: int, sizes: Sizes,
                    work: Path) -> list[dict[str, Any]]:
    rows = []
    fx = Fixtures(replace(sizes, large=1 << 20))
    for n in sizes_:
        root = work / f"{kind}-{n}"
        t = time.perf_counter()
        if kind == "tags":
            layout.tags(root, "scale/tags", [f"t{i:06d}" for i in range(n)])
            scs: list[RateScenario] = [TagsAt(fx, n)]
        else:
            layout.repositories(root, repo_names(n))
            scs = [CatalogAt(fx, n, last=False), CatalogAt(fx, n, last=True)]
        progress(f"{kind} @ {n:,}: layout written in {time.perf_counter() - t:.1f}s (untimed)")
        # the tags row measures whole lists: a fastreg page as large as the list
        own = {"tags": {"maxentries": max(n, TAGS_PAGE)}} if kind == "tags" else None
        servers = [_start_on(s, work / f"{kind}-{n}-srv", root, own) for s in names]
        try:
            for rnd in range(1, rounds + 1):
                k = (rnd - 1) % len(servers)
                for sc in scs:
                    for srv in servers[k:] + servers[:k]:
                        progress(f"  round {rnd}/{rounds}  {sc.name:<26} -> {srv.name} ...")
                        r = await measure(sc, srv, rnd, None)
                        _say(r)
                        rows.append({**asdict(r), "kind": sc.name.split("@")[0], "size": n,
                                     "work": getattr(sc, "page", n)})
        finally:
            for srv in servers:
                srv.stop()
            shutil.rmtree(work / f"{kind}-{n}-srv", ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
    return rows


async def ci_rows(concurrencies: list[int], names: list[str], rounds: int, sizes: Sizes,
                  work: Path) -> list[dict[str, Any]]:
    rows = []
    fx = Fixtures(replace(sizes, large=1 << 20))
    servers = [_start_on(s, work / "ci", None) for s in names]
    try:
        for c in concurrencies:
            sc = CIPushAt(fx, c)
            for rnd in range(1, rounds + 1):
                data = sc.round_data(rnd)
                k = (rnd - 1) % len(servers)
                for srv in servers[k:] + servers[:k]:
                    progress(f"  round {rnd}/{rounds}  {sc.name:<26} -> {srv.name} ...")
                    r = await measure(sc, srv, rnd, data)
                    _say(r)
                    rows.append({**asdict(r), "kind": "ci-push", "size": c, "work": 1})
    finally:
        for srv in servers:
            srv.stop()
    return rows


def _say(r: Any) -> None:
    if r.error:
        progress(f"    FAILED: {r.error}")
    else:
        lat = f"  p99 {r.latency_ms['p99']:.1f} ms" if r.latency_ms and "p99" in r.latency_ms else ""
        progress(f"    {r.value:,.1f} {r.unit}{lat}  cpu: client {r.client_cores:.2f} / server {r.server_cores:.2f} "
                 f"/ others {r.other_cores:.2f} cores  rss {r.peak_rss_worker_mib:.0f} MiB")


def _offline(cmd: list[str], env: dict[str, str] | None, timeout: float) -> tuple[float, float, str]:
    """Wall and CPU seconds (the command's and its children's) of one offline command."""
    t = time.perf_counter()
    before = os.times()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    wall = time.perf_counter() - t
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({p.returncode}): {p.stdout[-1500:]} {p.stderr[-1500:]}")
    return wall, cpu, p.stdout[-300:]


def _count_blobs(root: Path) -> int:
    return sum(1 for _ in (root / layout.V2 / "blobs/sha256").glob("*/*/data"))


def gc_rows(counts: list[int], names: list[str], rounds: int, work: Path) -> list[dict[str, Any]]:
    """gc (both servers) and fastreg check, each on a fresh copy of the same layout; the blobs
    left are counted so a gc that deleted nothing (or too much) fails the row."""
    rows = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    for n in counts:
        template = work / f"blobs-{n}"
        t = time.perf_counter()
        made = layout.blobs(template, n)
        progress(f"gc @ {n:,} blobs: layout written in {time.perf_counter() - t:.1f}s (untimed): {made}")
        keep = made["blobs"] - made["orphans"]
        jobs: list[tuple[str, str]] = [(s, "gc") for s in names] + ([(FASTREG, "check")] if FASTREG in names else [])
        for rnd in range(1, rounds + 1):
            k = (rnd - 1) % len(jobs)
            for srv, what in jobs[k:] + jobs[:k]:
                copy = work / f"copy-{n}"
                shutil.rmtree(copy, ignore_errors=True)
                subprocess.run(["cp", "-a", str(template), str(copy)], check=True, timeout=3600)
                cfg = work / "gc.yml"
                cfg.write_text(json.dumps(registry_config(copy, 5000)))
                if srv == FASTREG:
                    cmd = [sys.executable, "-m", "fastreg", what,
                           *(["--grace", "0s", "--quiet"] if what == "gc" else []),
                           str(cfg)]
                else:
                    binary = distribution3_binary() if srv == DIST3 else "/usr/bin/docker-registry"
                    cmd = [str(binary), "garbage-collect", str(cfg)]
                progress(f"  round {rnd}/{rounds}  {what}@{n:<8} -> {srv} ...")
                error = None
                try:
                    wall, cpu, _ = _offline(cmd, env, timeout=3600)
                    left = _count_blobs(copy)
                    want = keep if what == "gc" else made["blobs"]
                    if left != want:
                        error = f"{left} blobs left, expected {want}"
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    wall, cpu, error = 0.0, 0.0, str(exc)[:500]
                progress(f"    {wall:.2f} s wall, {cpu:.2f} CPU-s" + (f"  FAILED: {error}" if error else ""))
                rows.append({"scenario": f"{what}@{n}", "kind": what, "size": n, "work": n, "server": srv,
                             "round": rnd, "unit": "s", "value": None if error else wall, "cpu_s": cpu,
                             "error": error, "latency_ms": None})
                shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(template, ignore_errors=True)
    return rows


def cost(row: dict[str, Any]) -> float | None:
    """Seconds per operation: 1/rate for rate rows, the wall time for offline ones."""
    if row["value"] is None:
        return None
    return row["value"] if row["unit"] == "s" else 1.0 / row["value"]


def summarize(rows: list[dict[str, Any]], ref: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        k: dict[str, Any] = {"unit": mine[0]["unit"], "sizes": sorted({r["size"] for r in mine}), "servers": {}}
        for srv in dict.fromkeys(r["server"] for r in mine):
            pts = []
            for size in k["sizes"]:
                rs = [r for r in mine if r["server"] == srv and r["size"] == size and r["value"] is not None]
                if not rs:
                    continue
                c = statistics.median(cost(r) for r in rs)          # type: ignore[type-var]
                p99 = [r["latency_ms"]["p99"] for r in rs if r.get("latency_ms") and "p99" in r["latency_ms"]]
                pts.append({"size": size, "work": rs[0]["work"], "value": statistics.median(r["value"] for r in rs),
                            "cost_s": c, "cost_per_work_s": c / rs[0]["work"],
                            "p99_ms": statistics.median(p99) if p99 else None,
                            "rss_mib": max((r.get("peak_rss_worker_mib") or 0 for r in rs), default=0) or None,
                            "failed_runs": sum(1 for r in mine if r["server"] == srv and r["size"] == size
                                               and r["value"] is None)})
            growth = (pts[-1]["cost_per_work_s"] / pts[0]["cost_per_work_s"]) if len(pts) > 1 else None
            k["servers"][srv] = {"points": pts, "growth": growth,
                                 "faster_than_work": bool(growth and growth > GROWTH_LIMIT and kind != "ci-push")}
        out[kind] = k
    return out


def table(summary: dict[str, Any], ref: str | None) -> str:
    lines = [("| row | size | server | figure | cost per op | cost per unit of work | p99 ms | peak RSS/worker MiB "
              "| reference's cost / fastreg's |"), "|---|---|---|---|---|---|---|---|---|"]
    for kind, k in summary.items():
        for size in k["sizes"]:
            for srv, s in k["servers"].items():
                p = next((p for p in s["points"] if p["size"] == size), None)
                if p is None:
                    lines.append(f"| {kind} | {size:,} | {report.label(srv)} | FAILED | | | | | |")
                    continue
                fig = f"{p['value']:.2f} s" if k["unit"] == "s" else f"{p['value']:,.1f} {k['unit']}"
                rel = ""
                if srv == FASTREG and ref in k["servers"]:
                    q = next((q for q in k["servers"][ref]["points"] if q["size"] == size), None)
                    if q:
                        rel = f"{q['cost_s'] / p['cost_s']:.2f}×"
                p99 = f"{p['p99_ms']:.1f}" if p["p99_ms"] else "—"
                rss = f"{p['rss_mib']:.0f}" if p["rss_mib"] else "—"
                lines.append(f"| {kind} | {size:,} | {report.label(srv)} | {fig} | {_t(p['cost_s'])} "
                             f"| {_t(p['cost_per_work_s'])} | {p99} | {rss} | {rel} |")
    notes = []
    for kind, k in summary.items():
        for srv, s in k["servers"].items():
            if s["growth"] is not None:
                mark = " — **grows faster than its work**" if s["faster_than_work"] else ""
                notes.append(f"- {kind}, {report.label(srv)}: cost per unit of work ×{s['growth']:.2f} from "
                             f"{k['sizes'][0]:,} to {k['sizes'][-1]:,}{mark}")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _t(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.2f} µs"
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def chart(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(summary)
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(4.2 * len(kinds), 8.0), 4.6), squeeze=False)
    colors = {FASTREG: "tab:blue", DIST3: "tab:orange", DIST2: "tab:grey"}
    for ax, kind in zip(axes[0], kinds, strict=False):
        k = summary[kind]
        if not any(s["points"] for s in k["servers"].values()):
            ax.set_title(f"{kind}: no figures", fontsize=9)
            continue
        for srv, s in k["servers"].items():
            xs = [p["size"] for p in s["points"]]
            ax.plot(xs, [p["cost_s"] * 1e3 for p in s["points"]], marker="o", color=colors.get(srv),
                    label=report.label(srv) + (" ⚠ faster than work" if s["faster_than_work"] else ""))
            if xs and kind not in ("ci-push",) and not kind.startswith("catalog"):
                # linear in the work, through the smallest size: the slope a cost should not exceed
                base = s["points"][0]["cost_s"] * 1e3
                ax.plot(xs, [base * x / xs[0] for x in xs], ls=":", color=colors.get(srv), alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("concurrency" if kind == "ci-push" else "blobs" if kind in ("gc", "check") else "entries")
        ax.set_ylabel("ms per operation" if k["unit"] != "s" else "ms wall")
        ax.legend(fontsize=7)
    fig.suptitle(title + "  (dotted: linear in the work)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 s runs: a smoke test, not a benchmark")
    p.add_argument("--servers", default="fastreg,distribution", help="as python -m bench --servers")
    p.add_argument("--only", default="tags,catalog,gc,ci-push", help="rows: tags, catalog, gc, ci-push")
    p.add_argument("--entries", default=None, help="tags and catalog sizes (default 1000,10000,100000)")
    p.add_argument("--blobs", default=None, help="gc/check sizes (default 10000,100000)")
    p.add_argument("--concurrency", default=None, help="ci-push concurrencies (default 8,32,128)")
    p.add_argument("--seconds", type=float, default=None, help="duration of each request-rate run (default 10)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    try:
        names = pick_servers(a.servers, variants=False)
    except ValueError as exc:
        print(f"bench.scaling: {exc}", file=sys.stderr)
        return 2
    if not (tools.have("wrk") and tools.have("ab")):
        print("bench.scaling: missing wrk or ab (apt-get install wrk apache2-utils)", file=sys.stderr)
        return 2
    def ints(s: str | None, default: str) -> list[int]:
        return [int(x) for x in (s or default).split(",") if x]
    entries = ints(a.entries, "100,400" if a.quick else "1000,10000,100000")
    blob_counts = ints(a.blobs, "200,800" if a.quick else "10000,100000")
    conc = ints(a.concurrency, "2,8" if a.quick else "8,32,128")
    rounds = a.rounds or (1 if a.quick else 3)
    sizes = QUICK if a.quick else Sizes()
    sizes = replace(sizes, seconds=a.seconds or (1.0 if a.quick else 10.0), ci_images=8 if a.quick else 50)
    only = {w.strip() for w in a.only.split(",")}
    started = dt.datetime.now(dt.UTC)
    out = a.out or RESULTS / ("scaling-" + started.strftime("%Y%m%dT%H%M%SZ"))
    out.mkdir(parents=True, exist_ok=True)
    ref = next((n for n in names if n != FASTREG), None)
    work = Path(tempfile.mkdtemp(prefix="fastreg-scaling-"))
    rows: list[dict[str, Any]] = []
    progress(f"bench.scaling: servers {', '.join(report.label(n) for n in names)}; work in {work}")
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        if "tags" in only:
            rows += run(rate_rows("tags", entries, names, rounds, sizes, work))
        if "catalog" in only:
            rows += run(rate_rows("catalog", entries, names, rounds, sizes, work))
        if "gc" in only:
            rows += gc_rows(blob_counts, names, rounds, work)
        if "ci-push" in only:
            rows += run(ci_rows(conc, names, rounds, sizes, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(rows, ref)
    note = FALLBACK if ref == DIST2 else None
    meta = {"date": started.isoformat(timespec="seconds"), "rounds": rounds, "quick": a.quick, "servers": names,
            "reference": ref, "reference_note": note, "entries": entries, "blobs": blob_counts,
            "concurrency": conc, "seconds": sizes.seconds, "loadavg_end": os.getloadavg()}
    (out / "scaling.json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    tbl = table(summary, ref)
    head = f"{meta['date']}, {rounds} round(s){' (quick)' if a.quick else ''}\n\n" + (f"**{note}**\n\n" if note else "")
    (out / "scaling.md").write_text(head + tbl)
    chart(summary, out / "scaling.png", f"how cost grows: fastreg vs {report.label(ref)} — {meta['date']}")
    print(tbl)
    print(f"results: {out}/scaling.json, chart: {out}/scaling.png")
    return 1 if any(r["value"] is None for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
