"""Summarise py-spy collapsed stacks (`py-spy record --format raw`): top functions by own and total time.

    python -m bench.profile_summary bench/results/<ts>/profiles/catalog-r1-pid123.txt [--top 25]
"""
from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_LOC = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _frame(f: str) -> str:
    m = _LOC.match(f)
    if not m:
        return f
    path = m.group("file")
    for marker in ("/fastreg/", "/site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1] if marker != "/fastreg/" else "fastreg/" + path.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({path})"


def summarize(path: Path, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    out = [f"{path.name}: {samples} samples"]
    out.append("  own%   total%  function")
    for fn, n in own.most_common(top):
        out.append(f"  {100 * n / samples:5.1f}  {100 * total[fn] / samples:6.1f}  {fn}")
    out.append("  -- by total (inclusive) --")
    for fn, n in total.most_common(top):
        out.append(f"  {100 * own[fn] / samples:5.1f}  {100 * n / samples:6.1f}  {fn}")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    for f in a.files:
        print(summarize(f, a.top))
        print()


if __name__ == "__main__":
    main()
