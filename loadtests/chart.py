"""Turn locust CSV results into a markdown table and a PNG chart, one series per registry.

    python loadtests/chart.py --out storm.png fastreg=results/fastreg distribution=results/dist

Each PREFIX is what was given to `locust --csv PREFIX` (it reads PREFIX_stats.csv and
PREFIX_stats_history.csv).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(v: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="LABEL=PREFIX")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default="locust")
    a = p.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    print("| registry | requests | failures | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    labels, pct = [], {"50%": [], "95%": [], "99%": []}
    for spec in a.runs:
        label, _, prefix = spec.partition("=")
        agg = next(r for r in _rows(Path(prefix + "_stats.csv")) if r["Name"] == "Aggregated")
        print(f"| {label} | {agg['Request Count']} | {agg['Failure Count']} | {_num(agg['Requests/s']):,.0f} "
              f"| {agg['50%']} | {agg['95%']} | {agg['99%']} |")
        hist = [r for r in _rows(Path(prefix + "_stats_history.csv")) if r["Name"] == "Aggregated"]
        if hist:
            t0 = int(hist[0]["Timestamp"])
            ax1.plot([int(r["Timestamp"]) - t0 for r in hist], [_num(r["Requests/s"]) for r in hist], label=label)
        labels.append(label)
        for k, vals in pct.items():
            vals.append(_num(agg[k]))
    ax1.set_xlabel("seconds")
    ax1.set_ylabel("requests/s (all request types)")
    ax1.set_title("throughput over time")
    ax1.legend()
    width = 0.25
    for i, (k, vals) in enumerate(pct.items()):
        ax2.bar([x + (i - 1) * width for x in range(len(labels))], vals, width, label=f"p{k.rstrip('%')}")
    ax2.set_xticks(range(len(labels)), labels)
    ax2.set_yscale("log")
    ax2.set_ylabel("latency ms (log)")
    ax2.set_title("latency percentiles (all requests)")
    ax2.legend()
    fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
