"""Go duration strings (Distribution's config writes every duration this way): parsing and printing.

A module of its own, below both the config and the storage drivers that read durations from
their parameters (``middleware.storage`` options), so neither imports the other for it.
"""
from __future__ import annotations

import re

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` → seconds: ``[-+]?(number unit)+`` or ``0``; "1h30m", "300ms"."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    body = s[1:] if s[:1] in "+-" else s
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r} (expected e.g. 300ms, 10s, 1h30m)")
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Seconds as a Go duration, the way a config writes one: 604800 → "168h", 5400 → "1h30m",
    0.3 → "300ms" (the inverse of ``parse_duration``, without Go's "0m0s" padding)."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}us"
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    frac = seconds - whole
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "")
    if s or frac:
        out += f"{s + frac:g}s"
    return out
