"""Summaries (medians, min–max, per-round ratios), the text table, JSON and the PNG chart."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def _stats(xs: list[float]) -> dict[str, float] | None:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)} if xs else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    runs = result["runs"]
    for name, meta in result["scenarios"].items():
        mine = [r for r in runs if r["scenario"] == name]
        row: dict[str, Any] = {"unit": meta["unit"], "target": meta["target"], "what": meta["what"]}
        for srv in ("fastreg", "distribution"):
            ok = [r for r in mine if r["server"] == srv and r["value"] is not None]
            row[srv] = _stats([r["value"] for r in ok])
            row[srv + "_failed_runs"] = sum(1 for r in mine if r["server"] == srv and r["value"] is None)
            for p in ("p50", "p90", "p99"):
                vals = [r["latency_ms"][p] for r in ok if r["latency_ms"] and p in r["latency_ms"]]
                if vals:
                    row.setdefault(srv + "_latency_ms", {})[p] = statistics.median(vals)
            row[srv + "_peak_rss_mib"] = max((r["peak_rss_worker_mib"] for r in ok), default=None)
            row[srv + "_server_cores"] = statistics.median([r["server_cores"] for r in ok]) if ok else None
            row[srv + "_client_cores"] = statistics.median([r["client_cores"] for r in ok]) if ok else None
            row[srv + "_other_cores"] = statistics.median([r["other_cores"] for r in ok]) if ok else None
            row[srv + "_bound"] = statistics.mode([r["bound"] for r in ok]) if ok else None
        # Ratios within a round (push speed swings between rounds with the page cache). The
        # efficiency ratio compares work per CPU-second of each server: robust to neighbours that
        # take CPU away from one server's run and not the other's (a shared machine).
        ratios, p99r, eff = [], [], []
        for rnd in sorted({r["round"] for r in mine}):
            f = next((r for r in mine if r["round"] == rnd and r["server"] == "fastreg"), None)
            d = next((r for r in mine if r["round"] == rnd and r["server"] == "distribution"), None)
            if f and d and f["value"] and d["value"]:
                ratios.append(f["value"] / d["value"])
                if f["server_cores"] > 0 and d["server_cores"] > 0:
                    eff.append((f["value"] / f["server_cores"]) / (d["value"] / d["server_cores"]))
                if f["latency_ms"] and d["latency_ms"] and d["latency_ms"].get("p99"):
                    p99r.append(f["latency_ms"]["p99"] / d["latency_ms"]["p99"])
        row["ratio"] = _stats(ratios)
        if name in CEILING_SCENARIOS:
            row["ceiling_ratio"] = _ceiling_ratio(result, name)
        row["p99_ratio"] = _stats(p99r)
        row["cpu_efficiency_ratio"] = _stats(eff)
        row["met"] = bool(row["ratio"] and row["ratio"]["median"] >= meta["target"])
        out[name] = row
    return out


CEILING_SCENARIOS = ("push-large", "push-chunked")


def _ceiling_ratio(result: dict[str, Any], name: str) -> dict[str, float] | None:
    """Per round: granian's receive + SHA-256 of the large blob (nothing stored, bench/ceiling.py)
    over Distribution's figure for `name` — the best ratio a registry that verifies digests
    under granian's ASGI could show in that round."""
    per = []
    for c in result.get("ceilings") or []:
        d = next((r for r in result["runs"] if r["scenario"] == name and r["server"] == "distribution"
                  and r["round"] == c["round"] and r["value"]), None)
        if d and "recv_sha256_MBps" in c:
            per.append(c["recv_sha256_MBps"] / d["value"])
    return _stats(per)


def ceilings(result: dict[str, Any]) -> str:
    """The per-round machine ceilings, and for the large pushes the best ratio any registry that
    verifies digests under granian's ASGI could show (receive + SHA-256, nothing stored, over
    Distribution's figure of the same round)."""
    ceil = result.get("ceilings") or []
    if not ceil:
        return ""
    def col(key: str) -> str:
        return " / ".join(f"{c[key]:.0f}" for c in ceil if key in c)
    lines = [f"Per-round ceilings (MB/s): page-cache write {col('write_MBps')}; SHA-256 {col('sha256_MBps')}"]
    if any("recv_MBps" in c for c in ceil):
        lines[0] += (f"; granian ASGI receive {col('recv_MBps')}; receive + SHA-256 (bench/ceiling.py) "
                     f"{col('recv_sha256_MBps')}")
        for name in CEILING_SCENARIOS:
            st = _ceiling_ratio(result, name)
            if st is not None:
                lines.append(f"{name}: the receive + SHA-256 ceiling is {st['median']:.2f}× "
                             f"({st['min']:.2f}–{st['max']:.2f}) Distribution's figure of the same round")
    return "\n\n".join(lines) + "\n"


def _fmt(s: dict[str, float] | None, digits: int = 0) -> str:
    if not s:
        return "—"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}–{f.format(s['max'])})"


def table(summary: dict[str, Any]) -> str:
    head = ("| scenario | unit | fastreg median (min–max) | Distribution median (min–max) | ratio (per-round min–max) "
            "| target | met | per server CPU-s ratio | p99 ms fastreg / Distribution | peak RSS/worker MiB f / d "
            "| CPU cores client, server, others: fastreg / Distribution | bound f / d |")
    lines = [head, "|" + "---|" * 12]
    for name, r in summary.items():
        digits = 1 if r["fastreg"] and r["fastreg"]["median"] < 100 else 0
        ratio = (f"{r['ratio']['median']:.2f}× ({r['ratio']['min']:.2f}–{r['ratio']['max']:.2f})"
                 if r["ratio"] else "—")
        fl, dl = r.get("fastreg_latency_ms", {}), r.get("distribution_latency_ms", {})
        p99 = f"{fl['p99']:.1f} / {dl['p99']:.1f}" if "p99" in fl and "p99" in dl else "—"
        rss = " / ".join(f"{r[s + '_peak_rss_mib']:.0f}" if r[s + "_peak_rss_mib"] else "—"
                         for s in ("fastreg", "distribution"))
        cpu = " / ".join(
            f"{r[s + '_client_cores']:.2f}, {r[s + '_server_cores']:.2f}, {r[s + '_other_cores']:.2f}"
            if r[s + "_server_cores"] is not None else "—"
            for s in ("fastreg", "distribution"))
        bound = f"{r['fastreg_bound'] or '—'} / {r['distribution_bound'] or '—'}"
        fails = r["fastreg_failed_runs"] + r["distribution_failed_runs"]
        e = r.get("cpu_efficiency_ratio")
        eff = f"{e['median']:.2f}× ({e['min']:.2f}–{e['max']:.2f})" if e else "—"
        lines.append(f"| {name}{' ⚠ ' + str(fails) + ' failed runs' if fails else ''} | {r['unit']} "
                     f"| {_fmt(r['fastreg'], digits)} | {_fmt(r['distribution'], digits)} | {ratio} "
                     f"| ≥ {r['target']:g}× | {'yes' if r['met'] else '**no**'} | {eff} | {p99} | {rss} | {cpu} | {bound} |")
    return "\n".join(lines)


def chart(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    rate = [n for n in names if summary[n].get("fastreg_latency_ms") and summary[n].get("distribution_latency_ms")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": [1.2, 1]})
    xs = range(len(names))
    med = [summary[n]["ratio"]["median"] if summary[n]["ratio"] else 0 for n in names]
    lo = [m - summary[n]["ratio"]["min"] if summary[n]["ratio"] else 0 for n, m in zip(names, med)]
    hi = [summary[n]["ratio"]["max"] - m if summary[n]["ratio"] else 0 for n, m in zip(names, med)]
    colors = ["tab:green" if summary[n]["met"] else "tab:red" for n in names]
    ax1.bar(xs, med, yerr=[lo, hi], color=colors, capsize=3,
            label="fastreg / Distribution (median, min–max; green: target met)")
    eff = [summary[n].get("cpu_efficiency_ratio") for n in names]
    ax1.scatter([x for x, e in zip(xs, eff) if e], [e["median"] for e in eff if e], marker="D", s=30,
                color="navy", zorder=4, label="same, per server CPU-second")
    ax1.scatter(xs, [summary[n]["target"] for n in names], marker="_", s=600, color="black", zorder=3,
                label="target")
    ceil = [(x, summary[n]["ceiling_ratio"]["median"]) for x, n in zip(xs, names) if summary[n].get("ceiling_ratio")]
    if ceil:
        ax1.scatter([x for x, _ in ceil], [c for _, c in ceil], marker="^", s=60, facecolors="none",
                    edgecolors="purple", zorder=4, label="granian receive + SHA-256, nothing stored (ceiling)")
    ax1.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax1.set_yscale("log")
    ax1.set_xticks(list(xs), names, rotation=40, ha="right")
    ax1.set_ylabel("ratio (log)")
    ax1.set_title("fastreg / Distribution vs target")
    ax1.legend(fontsize=8)
    width = 0.13
    for i, (srv, pct) in enumerate([(s, p) for s in ("fastreg", "distribution") for p in ("p50", "p90", "p99")]):
        vals = [summary[n][srv + "_latency_ms"].get(pct, 0) for n in rate]
        ax2.bar([x + (i - 2.5) * width for x in range(len(rate))], vals, width,
                label=f"{srv} {pct}", color=("tab:blue" if srv == "fastreg" else "tab:orange"),
                alpha=0.45 + 0.25 * ("p50", "p90", "p99").index(pct))
    ax2.set_yscale("log")
    ax2.set_xticks(range(len(rate)), rate, rotation=40, ha="right")
    ax2.set_ylabel("latency ms (log)")
    ax2.set_title("latency percentiles")
    ax2.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Re-render results.md and chart.png from a results.json: `python -m bench.report DIR/results.json`."""
    import json
    import sys
    src = Path(sys.argv[1])
    doc = json.loads(src.read_text())
    summary = summarize(doc)
    doc["summary"] = summary
    src.write_text(json.dumps(doc, indent=1))
    meta = doc["meta"]
    tbl = table(summary)
    (src.parent / "results.md").write_text(f"{meta['date']}, {meta['rounds']} round(s)\n\n{tbl}\n\n{ceilings(doc)}")
    chart(summary, src.parent / "chart.png", f"fastreg vs Distribution — {meta['date']}, {meta['rounds']} round(s)")
    print(tbl)


if __name__ == "__main__":
    main()
