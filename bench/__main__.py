"""`python -m bench [--rounds N] [--quick] [--servers LIST] [--scenarios a,b] [--out DIR]`.

Starts fastreg and CNCF Distribution on 127.0.0.1 (free ports, temporary data directories, the
same config), runs every scenario against each in alternation for N rounds, and measures the
machine's ceilings each round: a bare ASGI app under granian answering GET/HEAD with fastreg's
own manifest and blob answers, and granian's receive + SHA-256 of the large blob. It prints a
table of medians (min–max), fastreg / Distribution 3.1.1 ratios, fastreg's fraction of its
ceiling, p99 and peak RSS beside the targets, and writes results.json, results.md and chart.png
into bench/results/<UTC timestamp>/.

Servers: fastreg; Distribution 3.1.1 (`registry:3`, the reference) from
$BENCH_DISTRIBUTION3, else ../shared/tools/distribution-3.1.1/registry beside the
checkout, else /work/shared/tools/distribution-3.1.1/registry; Debian's `docker-registry`
(Distribution 2.8.2, Go 1.19). `--servers` takes fastreg, 3.1.1, 2.8.2, distribution (3.1.1 when
found, else 2.8.2, said loudly) or all.

Variants of fastreg run beside it, in the same alternation, each with its ratio to plain fastreg
(VARIANT / fastreg) in the table and the chart: `fastreg+pulls` (fastreg.history.pulls: true; the
named configs are bench/servers.py's VARIANTS), `fastreg@REF` (the commit REF of this checkout,
exported and built in the run's temporary directory, removed at the end), or both
(`fastreg@REF+pulls`). Without Cython, fastreg@REF runs this checkout's built extensions where
REF's .pyx files are identical, else stops; `--ref-engines checkout` runs them anyway (said in the
results). Examples:

  python -m bench --servers fastreg,fastreg@main               # this checkout against main
  python -m bench --servers fastreg,fastreg+pulls --scenarios pull-manifest,head-blob
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from . import report, tools
from .runner import run_all
from .scenarios import ALL, QUICK, Sizes
from .servers import (
    DIST2,
    DIST3,
    DISTRIBUTION3_ENV,
    DISTRIBUTION_BIN,
    FASTREG,
    FastregAt,
    distribution3_binary,
    distribution_available,
    is_fastreg,
    parse_variant,
    resolve_ref,
    version,
)

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 s runs: a smoke test, not a benchmark")
    p.add_argument("--scenarios", default="", help="comma-separated subset of: " + ",".join(s.name for s in ALL))
    p.add_argument("--servers", default="fastreg,distribution",
                   help="comma-separated: fastreg, 3.1.1, 2.8.2, distribution (3.1.1 if found, else 2.8.2) or "
                        "all (default fastreg,distribution; 'fastreg' alone for profiling); and variants of "
                        "fastreg: fastreg+pulls (pull history on), fastreg@REF (git commit REF, built in a "
                        "temporary tree), fastreg@REF+pulls")
    p.add_argument("--ref-engines", choices=["auto", "build", "checkout"], default="auto",
                   help="compiled extensions of fastreg@REF: auto (built with Cython; without Cython, this "
                        "checkout's built ones where REF's .pyx files are identical), build (built or stop), "
                        "checkout (this checkout's built ones even where REF's .pyx differ: said in the results)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy record every fastreg worker during each run (SVGs in the results directory; "
                        "skews fastreg's numbers)")
    p.add_argument("--seconds", type=float, default=None, help="duration of each request-rate run")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results/<timestamp>)")
    a = p.parse_args(argv)

    names = [s.strip() for s in a.scenarios.split(",") if s.strip()] or [s.name for s in ALL]
    unknown = sorted(set(names) - {s.name for s in ALL})
    if unknown:
        p.error(f"unknown scenarios: {', '.join(unknown)}")
    try:
        servers = pick_servers(a.servers)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    missing = [t for t in ("wrk", "ab") if not tools.have(t)]
    if DIST2 in servers and not distribution_available():
        missing.append(DISTRIBUTION_BIN)
    if missing:
        print(f"bench: missing {', '.join(missing)} (apt-get install wrk apache2-utils docker-registry)",
              file=sys.stderr)
        return 2
    FastregAt.engines = a.ref_engines
    sizes = QUICK if a.quick else Sizes()
    if a.seconds:
        sizes = Sizes(**{**sizes.__dict__, "seconds": a.seconds})
    rounds = a.rounds or (1 if a.quick else 5)
    started = dt.datetime.now(dt.UTC)
    out = a.out or RESULTS / started.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)

    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(f"bench: servers {', '.join(report.label(n) for n in servers)}", file=sys.stderr, flush=True)
    try:
        result = runner(run_all(names, rounds, sizes, servers, out / "profiles" if a.profile else None))
    except asyncio.CancelledError:      # SIGTERM: the servers are stopped, the data removed
        print("bench: stopped (SIGTERM)", file=sys.stderr)
        return 143
    try:
        return _report(a, result, started, rounds, sizes, out, servers)
    finally:
        if os.environ.get("BENCH_KEEP_DATA") != "1":
            print(f"removing {result['workdir']} ...", file=sys.stderr, flush=True)
            shutil.rmtree(result["workdir"], ignore_errors=True)


FALLBACK = (f"Distribution 3.1.1 NOT FOUND (${DISTRIBUTION3_ENV}, ../shared/tools/distribution-3.1.1/registry, "
            f"/work/shared/tools/distribution-3.1.1/registry): measuring against Debian's Distribution 2.8.2 "
            f"(Go 1.19) instead; its ratios are not the reference's")


def pick_servers(spec: str, variants: bool = True) -> list[str]:
    """Server names for `--servers`: fastreg first, then its variants (in the order given), then
    3.1.1, then 2.8.2."""
    have3 = distribution3_binary() is not None
    chosen: set[str] = set()
    fastregs: list[str] = []
    for word in (w.strip() for w in spec.split(",")):
        if not word:
            continue
        if is_fastreg(word) and word != FASTREG:
            if not variants:
                raise ValueError(f"{word!r}: variants of fastreg are measured by `python -m bench` only")
            ref, _ = parse_variant(word)        # ValueError naming what is wrong
            if ref is not None and resolve_ref(ref) is None:
                raise ValueError(f"{word!r}: {ref!r} is not a commit of this checkout")
            if word not in fastregs:
                fastregs.append(word)
            continue
        word = word.lower()
        if word == "fastreg":
            chosen.add(FASTREG)
        elif word in ("3.1.1", "3", DIST3, "distribution3"):
            if not have3:
                raise ValueError(f"Distribution 3.1.1 not found: set ${DISTRIBUTION3_ENV} to its binary")
            chosen.add(DIST3)
        elif word in ("2.8.2", "2.8", "2", DIST2, "distribution2", "debian"):
            chosen.add(DIST2)
        elif word == "distribution":
            if not have3:
                print(f"bench: {FALLBACK}", file=sys.stderr, flush=True)
            chosen.add(DIST3 if have3 else DIST2)
        elif word == "all":
            chosen |= {FASTREG, DIST2} | ({DIST3} if have3 else set())
            if not have3:
                print(f"bench: {FALLBACK}", file=sys.stderr, flush=True)
        else:
            raise ValueError(f"unknown server {word!r} (fastreg, 3.1.1, 2.8.2, distribution, all)")
    if not chosen and not fastregs:
        raise ValueError("no server chosen")
    if fastregs and FASTREG not in chosen:
        raise ValueError(f"{', '.join(fastregs)}: a variant is measured against plain fastreg: add fastreg")
    return [n for n in (FASTREG,) if n in chosen] + fastregs + [n for n in (DIST3, DIST2) if n in chosen]


def _report(a: argparse.Namespace, result: dict, started: dt.datetime, rounds: int, sizes: Sizes,
            out: Path, servers: list[str]) -> int:
    summary = report.summarize(result)
    binaries = {DIST3: distribution3_binary(), DIST2: DISTRIBUTION_BIN}
    ref = report.reference(result)
    meta = {
        "date": started.isoformat(timespec="seconds"), "rounds": rounds, "quick": a.quick,
        "sizes": sizes.__dict__, "cpus": os.cpu_count(), "python": platform.python_version(),
        "servers": servers, "reference": ref,
        "versions": {n: version(b) for n, b in binaries.items() if n in servers and b},
        "commits": result.get("commits") or {},
        "notes": result.get("notes") or [],
        "reference_note": None if ref != DIST2 else FALLBACK,
        "loadavg_end": os.getloadavg(),
    }
    doc = {"meta": meta, "summary": summary, **result}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    tbl = report.table(summary)
    ceil = report.ceilings(result)
    (out / "results.md").write_text(report.results_md(doc))
    report.chart(summary, out / "chart.png", report.title(meta, ref))
    print(tbl)
    for x in meta["notes"]:
        print(f"\n{x}")
    if meta["reference_note"]:
        print(f"\n{meta['reference_note']}")
    if ceil:
        print(f"\n{ceil}", end="")
    print(f"\nresults: {out}/results.json, chart: {out}/chart.png")
    failed = sum(1 for r in result["runs"] if r["value"] is None)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
