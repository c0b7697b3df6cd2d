"""Summaries (medians, min–max, per-round ratios and fractions of ceiling), the text table, JSON
and the PNG chart. fastreg and the reference (Distribution 3.1.1; Debian's 2.8.2 when 3.1.1 did
not run) come first everywhere.  Variants of fastreg (``fastreg+pulls``, ``fastreg@REF``, see
bench/servers.py) each get their columns and their ratio to plain fastreg (VARIANT / fastreg,
per round), and markers in the chart."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .runner import describe_fs
from .servers import DIST2, DIST3, FASTREG, LABELS, is_fastreg

VARIANT_COLORS = ["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
CEILING_NAMES = {"get_rps": "GET ceiling (bare ASGI app)", "head_rps": "HEAD ceiling (bare ASGI app)",
                 "recv_sha256_MBps": "receive + SHA-256 ceiling"}


def _stats(xs: list[float]) -> dict[str, float] | None:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)} if xs else None


def server_names(result: dict[str, Any]) -> list[str]:
    """fastreg, its variants (in the order they were given), 3.1.1, 2.8.2, anything else."""
    names = result.get("servers") or sorted({r["server"] for r in result["runs"]})

    def rank(n: str) -> int:
        return 0 if n == FASTREG else 1 if is_fastreg(n) else 2 if n == DIST3 else 3 if n == DIST2 else 4
    return sorted(names, key=rank)


def variants(result: dict[str, Any]) -> list[str]:
    """The variants of fastreg that ran (fastreg+pulls, fastreg@REF, ...)."""
    return [n for n in server_names(result) if is_fastreg(n) and n != FASTREG]


def reference(result: dict[str, Any]) -> str | None:
    """The server fastreg is measured against: 3.1.1, else 2.8.2 (else an older run's name); None
    when only fastreg and its variants ran."""
    others = [n for n in server_names(result) if not is_fastreg(n)]
    return others[0] if others else None


def label(name: str | None) -> str:
    return LABELS.get(name or "", name or "—")


def _per_round_ratio(mine: list[dict[str, Any]], a: str, b: str) -> tuple[list[float], list[float], list[float]]:
    """Ratios within a round (push speed swings between rounds with the page cache): value, p99
    and work per server CPU-second (robust to neighbours taking CPU from one run and not the other)."""
    ratios, p99r, eff = [], [], []
    for rnd in sorted({r["round"] for r in mine}):
        f = next((r for r in mine if r["round"] == rnd and r["server"] == a), None)
        d = next((r for r in mine if r["round"] == rnd and r["server"] == b), None)
        if f and d and f["value"] and d["value"]:
            ratios.append(f["value"] / d["value"])
            if f["server_cores"] > 0 and d["server_cores"] > 0:
                eff.append((f["value"] / f["server_cores"]) / (d["value"] / d["server_cores"]))
            if f["latency_ms"] and d["latency_ms"] and d["latency_ms"].get("p99"):
                p99r.append(f["latency_ms"]["p99"] / d["latency_ms"]["p99"])
    return ratios, p99r, eff


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    runs = result["runs"]
    names = server_names(result)
    ref = reference(result)
    for name, meta in result["scenarios"].items():
        mine = [r for r in runs if r["scenario"] == name]
        row: dict[str, Any] = {k: meta.get(k) for k in ("unit", "target", "what", "ceiling", "ceiling_target",
                                                        "p99_target", "rss_target")}
        row["reference"] = ref
        row["servers"] = {}
        for srv in names:
            ok = [r for r in mine if r["server"] == srv and r["value"] is not None]
            s: dict[str, Any] = {"value": _stats([r["value"] for r in ok]),
                                 "failed_runs": sum(1 for r in mine if r["server"] == srv and r["value"] is None)}
            for p in ("p50", "p90", "p99"):
                vals = [r["latency_ms"][p] for r in ok if r["latency_ms"] and p in r["latency_ms"]]
                if vals:
                    s.setdefault("latency_ms", {})[p] = statistics.median(vals)
            s["peak_rss_mib"] = max((r["peak_rss_worker_mib"] for r in ok), default=None)
            for k in ("server_cores", "client_cores", "other_cores"):
                s[k] = statistics.median([r[k] for r in ok]) if ok else None
            s["bound"] = statistics.mode([r["bound"] for r in ok]) if ok else None
            row["servers"][srv] = s
        row["ratios"] = {}
        for other in names:
            if not is_fastreg(other):
                row["ratios"][other] = _stats(_per_round_ratio(mine, FASTREG, other)[0])
        row["variants"] = {}
        for v in names:
            if is_fastreg(v) and v != FASTREG:       # VARIANT / fastreg, per round
                vr, vp99, veff = _per_round_ratio(mine, v, FASTREG)
                row["variants"][v] = {"ratio": _stats(vr), "p99_ratio": _stats(vp99),
                                      "cpu_efficiency_ratio": _stats(veff)}
        ratios, p99r, eff = _per_round_ratio(mine, FASTREG, ref) if ref else ([], [], [])
        row["ratio"] = _stats(ratios)
        row["p99_ratio"] = _stats(p99r)
        row["cpu_efficiency_ratio"] = _stats(eff)
        row["ceiling_fraction"] = _ceiling_fraction(result, name, meta.get("ceiling"))
        if meta.get("ceiling") == "recv_sha256_MBps" and ref:
            row["ceiling_ratio"] = _ceiling_over(result, name, ref)
        f = row["servers"].get(FASTREG, {})
        checks: dict[str, bool | None] = {
            # against the reference: not judged when only fastreg (and its variants) ran
            "ratio": None if row["target"] is None or ref is None else
            bool(row["ratio"] and row["ratio"]["median"] >= row["target"]),
            "ceiling": None if row["ceiling_target"] is None else
            bool(row["ceiling_fraction"] and row["ceiling_fraction"]["median"] >= row["ceiling_target"]),
            "p99": None if row["p99_target"] is None or ref is None else
            bool(row["p99_ratio"] and row["p99_ratio"]["median"] <= row["p99_target"]),
            "rss": None if row["rss_target"] is None else
            bool(f.get("peak_rss_mib") and f["peak_rss_mib"] <= row["rss_target"]),
        }
        row["checks"] = checks
        row["met"] = bool(f.get("value")) and all(v for v in checks.values() if v is not None)
        out[name] = row
    return out


def _ceiling_fraction(result: dict[str, Any], name: str, key: str | None) -> dict[str, float] | None:
    """Per round: fastreg's figure over the ceiling measured in the same round."""
    if not key:
        return None
    per = []
    for c in result.get("ceilings") or []:
        f = next((r for r in result["runs"] if r["scenario"] == name and r["server"] == FASTREG
                  and r["round"] == c["round"] and r["value"]), None)
        if f and c.get(key):
            per.append(f["value"] / c[key])
    return _stats(per)


def _ceiling_over(result: dict[str, Any], name: str, ref: str) -> dict[str, float] | None:
    """Per round: the receive + SHA-256 ceiling over the reference's figure — the best ratio a
    registry that verifies digests under granian's ASGI could show in that round."""
    per = []
    for c in result.get("ceilings") or []:
        d = next((r for r in result["runs"] if r["scenario"] == name and r["server"] == ref
                  and r["round"] == c["round"] and r["value"]), None)
        if d and "recv_sha256_MBps" in c:
            per.append(c["recv_sha256_MBps"] / d["value"])
    return _stats(per)


def ceilings(result: dict[str, Any]) -> str:
    """The per-round machine ceilings, and fastreg's fraction of each."""
    ceil = result.get("ceilings") or []
    if not ceil:
        return ""

    def col(key: str, fmt: str = "{:.0f}") -> str:
        return " / ".join(fmt.format(c[key]) for c in ceil if key in c)
    lines = [f"Per-round ceilings (MB/s): page-cache write {col('write_MBps')}; SHA-256 {col('sha256_MBps')}"]
    if any("recv_MBps" in c for c in ceil):
        lines[0] += (f"; granian ASGI receive {col('recv_MBps')}; receive + SHA-256 (bench/ceiling.py) "
                     f"{col('recv_sha256_MBps')}")
    if any(c.get("disk_MBps") for c in ceil):
        lines[0] += f"; disk (direct I/O + fsync) {col('disk_MBps')}"
    if any("get_rps" in c for c in ceil):
        lines.append(f"Per-round GET ceiling (bare ASGI app under granian, fastreg's settings, the same "
                     f"headers and body as fastreg's manifest answer; wrk, 64 connections): "
                     f"{col('get_rps', '{:,.0f}')} req/s, p99 {col('get_p99_ms', '{:.1f}')} ms; "
                     f"HEAD ceiling (ab): {col('head_rps', '{:,.0f}')} req/s")
    ref = reference(result)
    for name, meta in result["scenarios"].items():
        key = meta.get("ceiling")
        st = _ceiling_fraction(result, name, key)
        if st is not None:
            lines.append(f"{name}: fastreg reaches {st['median']:.0%} ({st['min']:.0%}–{st['max']:.0%}) of the "
                         f"{CEILING_NAMES.get(key or '', key)} of the same round")
        disk = _ceiling_fraction(result, name, "disk_MBps") if key == "recv_sha256_MBps" else None
        if disk is not None:
            lines.append(f"{name}: fastreg stores at {disk['median']:.0%} ({disk['min']:.0%}–{disk['max']:.0%}) "
                         f"of what the disk takes (direct I/O + fsync) in the same round")
        if key == "recv_sha256_MBps" and ref:
            over = _ceiling_over(result, name, ref)
            if over is not None:
                lines.append(f"{name}: the receive + SHA-256 ceiling is {over['median']:.2f}× "
                             f"({over['min']:.2f}–{over['max']:.2f}) {label(ref)}'s figure of the same round")
    return "\n\n".join(lines) + "\n"


def _fmt(s: dict[str, float] | None, digits: int = 0) -> str:
    if not s:
        return "—"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}–{f.format(s['max'])})"


def _x(s: dict[str, float] | None, pct: bool = False) -> str:
    if not s:
        return "—"
    if pct:
        return f"{s['median']:.0%} ({s['min']:.0%}–{s['max']:.0%})"
    return f"{s['median']:.2f}× ({s['min']:.2f}–{s['max']:.2f})"


def _targets(r: dict[str, Any], ref: str | None) -> str:
    short = "3.1.1" if ref == DIST3 else "2.8.2" if ref == DIST2 else "ref"
    parts = []
    if r["target"] is not None and ref:
        parts.append(f"≥ {r['target']:g}× {short}")
    if r["ceiling_target"] is not None:
        parts.append(f"≥ {r['ceiling_target']:.0%} of ceiling")
    if r["p99_target"] is not None and ref:
        parts.append(f"p99 ≤ {r['p99_target']:.2g}× {short}")
    if r["rss_target"] is not None:
        parts.append(f"RSS ≤ {r['rss_target']:g} MiB")
    return "; ".join(parts) or "—"


def table(summary: dict[str, Any]) -> str:
    """fastreg and the reference first; fastreg's variants (each with VARIANT / fastreg) and the
    other Distribution after."""
    first = next(iter(summary.values()), None)
    if first is None:
        return ""
    ref = first["reference"]
    vs = list(first.get("variants") or {})
    others = [n for n in first["servers"] if not is_fastreg(n) and n != ref]
    rl = label(ref)
    rss_who = " / ".join(label(n) for n in [FASTREG, *vs, *([ref] if ref else [])])
    head = ("| scenario | unit | fastreg median (min–max) "
            + (f"| {rl} median (min–max) | fastreg / {rl} (per-round min–max) " if ref else "")
            + "| fraction of ceiling "
            + (f"| p99 ms fastreg / {rl} " if ref else "")
            + "| target | met "
            + "".join(f"| {label(v)} median (min–max) | {label(v)} / fastreg (per-round min–max) "
                      f"| p99 ms {label(v)} / fastreg " for v in vs)
            + "".join(f"| {label(o)} median | fastreg / {label(o)} " for o in others)
            + f"| peak RSS/worker MiB {rss_who} "
            + (f"| per server CPU-s ratio | CPU cores client, server, others: fastreg / {rl} "
               f"| bound fastreg / {rl} |" if ref else
               "| CPU cores client, server, others: fastreg | bound fastreg |"))
    ncol = head.count("|") - 1
    lines = [head, "|" + "---|" * ncol]
    for name, r in summary.items():
        f, d = r["servers"].get(FASTREG, {}), r["servers"].get(ref, {}) if ref else {}
        digits = 1 if f.get("value") and f["value"]["median"] < 100 else 0
        fl, dl = f.get("latency_ms", {}), d.get("latency_ms", {})
        p99 = f"{fl['p99']:.1f} / {dl['p99']:.1f}" if "p99" in fl and "p99" in dl else "—"
        who = [f, *(r["servers"].get(v, {}) for v in vs), *([d] if ref else [])]
        rss = " / ".join(f"{s['peak_rss_mib']:.0f}" if s.get("peak_rss_mib") else "—" for s in who)
        cpu = " / ".join(f"{s['client_cores']:.2f}, {s['server_cores']:.2f}, {s['other_cores']:.2f}"
                         if s.get("server_cores") is not None else "—" for s in ((f, d) if ref else (f,)))
        bound = f"{f.get('bound') or '—'} / {d.get('bound') or '—'}" if ref else f"{f.get('bound') or '—'}"
        fails = sum(s["failed_runs"] for s in r["servers"].values())
        missed = [k for k, v in r["checks"].items() if v is False]
        met = "yes" if r["met"] else "**no**" + (f" ({', '.join(missed)})" if missed else "")
        var = ""
        for v in vs:
            vs_, vr = r["servers"].get(v, {}), (r.get("variants") or {}).get(v, {})
            vl = vs_.get("latency_ms", {})
            vp99 = f"{vl['p99']:.1f} / {fl['p99']:.1f}" if "p99" in vl and "p99" in fl else "—"
            var += f"| {_fmt(vs_.get('value'), digits)} | {_x(vr.get('ratio'))} | {vp99} "
        extra = "".join(f"| {_fmt(r['servers'][o]['value'], digits)} | {_x(r['ratios'].get(o))} " for o in others)
        lines.append(f"| {name}{' ⚠ ' + str(fails) + ' failed runs' if fails else ''} | {r['unit']} "
                     f"| {_fmt(f.get('value'), digits)} "
                     + (f"| {_fmt(d.get('value'), digits)} | {_x(r['ratio'])} " if ref else "")
                     + f"| {_x(r['ceiling_fraction'], pct=True)} "
                     + (f"| {p99} " if ref else "")
                     + f"| {_targets(r, ref)} | {met} {var}{extra}| {rss} "
                     + (f"| {_x(r['cpu_efficiency_ratio'])} | {cpu} | {bound} |" if ref else f"| {cpu} | {bound} |"))
    return "\n".join(lines)


def chart(summary: dict[str, Any], path: Path, title: str) -> None:
    """Three panels: fastreg / reference per scenario (the other Distribution as hollow markers,
    each variant of fastreg as VARIANT / fastreg markers), fastreg's fraction of its ceiling, and
    p50/p99 latency of fastreg, its variants and the reference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    if not names:
        return
    ref = summary[names[0]]["reference"]
    rl = label(ref)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(19, 6.5), gridspec_kw={"width_ratios": [1.3, 0.8, 1]})
    xs = list(range(len(names)))
    med = [summary[n]["ratio"]["median"] if summary[n]["ratio"] else 0 for n in names]
    lo = [m - summary[n]["ratio"]["min"] if summary[n]["ratio"] else 0 for n, m in zip(names, med, strict=False)]
    hi = [summary[n]["ratio"]["max"] - m if summary[n]["ratio"] else 0 for n, m in zip(names, med, strict=False)]
    colors = ["tab:green" if summary[n]["met"] else "tab:red" for n in names]
    vs = list(summary[names[0]].get("variants") or {})
    if ref:
        ax1.bar(xs, med, yerr=[lo, hi], color=colors, capsize=3,
                label=f"fastreg / {rl} (median, min–max; green: every target met)")
        eff = [summary[n].get("cpu_efficiency_ratio") for n in names]
        ax1.scatter([x for x, e in zip(xs, eff, strict=False) if e], [e["median"] for e in eff if e], marker="D",
                    s=30, color="navy", zorder=4, label="same, per server CPU-second")
    for i, v in enumerate(vs):
        got = [(x, summary[n]["variants"][v]["ratio"]) for x, n in zip(xs, names, strict=False)
               if (summary[n].get("variants") or {}).get(v, {}).get("ratio")]
        dx = 0.12 * (i + 1) if ref else 0.12 * (i - (len(vs) - 1) / 2)      # beside the bars, if any
        ax1.errorbar([x + dx for x, _ in got], [g["median"] for _, g in got],
                     yerr=[[g["median"] - g["min"] for _, g in got], [g["max"] - g["median"] for _, g in got]],
                     fmt="^", ms=7, capsize=2, color=VARIANT_COLORS[i % len(VARIANT_COLORS)], zorder=5,
                     label=f"{label(v)} / fastreg (median, min–max)")
    for other in [o for o in summary[names[0]]["ratios"] if o != ref]:
        pts = [(x, summary[n]["ratios"][other]["median"]) for x, n in zip(xs, names, strict=False)
               if summary[n]["ratios"].get(other)]
        ax1.scatter([x for x, _ in pts], [v for _, v in pts], marker="o", s=40, facecolors="none",
                    edgecolors="grey", zorder=4, label=f"fastreg / {label(other)}")
    if ref:
        tg = [(x, summary[n]["target"]) for x, n in zip(xs, names, strict=False) if summary[n]["target"] is not None]
        ax1.scatter([x for x, _ in tg], [t for _, t in tg], marker="_", s=600, color="black", zorder=3,
                    label="target")
    ax1.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax1.set_yscale("log")
    ax1.set_xticks(xs, names, rotation=40, ha="right")
    ax1.set_ylabel("ratio (log)")
    ax1.set_title(" · ".join(([f"fastreg / {rl}"] if ref else []) + (["variants / fastreg"] if vs else [])))
    ax1.legend(fontsize=7)

    cn = [n for n in names if summary[n].get("ceiling_fraction")]
    cf = [summary[n]["ceiling_fraction"] for n in cn]
    ax2.bar(range(len(cn)), [c["median"] * 100 for c in cf],
            yerr=[[(c["median"] - c["min"]) * 100 for c in cf], [(c["max"] - c["median"]) * 100 for c in cf]],
            color=["tab:green" if summary[n]["checks"]["ceiling"] else "tab:red" for n in cn], capsize=3)
    ax2.scatter(range(len(cn)), [summary[n]["ceiling_target"] * 100 for n in cn], marker="_", s=600,
                color="black", zorder=3, label="target")
    ax2.axhline(100, color="grey", lw=0.8, ls="--")
    ax2.set_xticks(range(len(cn)), [f"{n}\n({CEILING_NAMES.get(summary[n]['ceiling'], '')})" for n in cn],
                   rotation=30, ha="right", fontsize=7)
    ax2.set_ylabel("% of the ceiling measured in the same round")
    ax2.set_title("fastreg / its ceiling")
    ax2.legend(fontsize=7)

    shown = [FASTREG, *vs, *([ref] if ref else [])]
    rate = [n for n in names if all(summary[n]["servers"].get(s, {}).get("latency_ms") for s in shown)]
    bars = [(s, p) for s in shown for p in ("p50", "p99")]
    width = 0.8 / len(bars)
    color = {FASTREG: "tab:blue", **({ref: "tab:orange"} if ref else {}),
             **{v: VARIANT_COLORS[i % len(VARIANT_COLORS)] for i, v in enumerate(vs)}}
    for i, (srv, pct) in enumerate(bars):
        vals = [summary[n]["servers"][srv]["latency_ms"].get(pct, 0) for n in rate]
        ax3.bar([x + (i - (len(bars) - 1) / 2) * width for x in range(len(rate))], vals, width,
                label=f"{label(srv)} {pct}", color=color[srv], alpha=0.5 + 0.4 * (pct == "p99"))
    ax3.set_yscale("log")
    ax3.set_xticks(range(len(rate)), rate, rotation=40, ha="right")
    ax3.set_ylabel("latency ms (log)")
    ax3.set_title("latency percentiles")
    ax3.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def title(meta: dict[str, Any], ref: str | None) -> str:
    against = [n for n in meta.get("servers") or [] if n != FASTREG and is_fastreg(n)] + ([ref] if ref else [])
    return (f"fastreg vs {', '.join(label(n) for n in against) or '—'} — {meta['date']}, {meta['rounds']} round(s)"
            f"{' quick' if meta.get('quick') else ''}")


def results_md(doc: dict[str, Any]) -> str:
    """results.md: what ran (versions, commits, the data's filesystem), the notes, the table and
    the ceilings."""
    meta = doc["meta"]
    servers = meta.get("servers") or []
    alone = "fastreg and its variants" if len(servers) > 1 else "fastreg alone"
    fs = doc.get("filesystem")
    where = (f"; data on {describe_fs(fs)}" if fs is not None else "") + (
        f", each push run after a sync and {doc['settle_s']:g} s" if doc.get("settle_s") else "")
    notes = "".join(f"**{x}**\n\n" for x in meta.get("notes") or [])
    ref_note = f"**{meta['reference_note']}**\n\n" if meta.get("reference_note") else ""
    return (f"{meta['date']}, {meta['rounds']} round(s){' (quick)' if meta.get('quick') else ''}, "
            f"{', '.join((meta.get('versions') or {}).values()) or alone}"
            f"{''.join(f', {n} = {c}' for n, c in (meta.get('commits') or {}).items())}{where}\n\n"
            f"{notes}{ref_note}{table(doc['summary'])}\n\n{ceilings(doc)}")


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
    (src.parent / "results.md").write_text(results_md(doc))
    chart(summary, src.parent / "chart.png", title(meta, reference(doc)))
    print(tbl)


if __name__ == "__main__":
    main()
