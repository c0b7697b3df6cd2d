"""GET /v2/_fastreg/history/<name>: when each tag of a repository was last pushed (JSON, paged).

Access is checked as for the repository's tag list (``repository:<name>:pull``).  The document::

    {"name": "ci/app",
     "tags": [{"tag": "v1", "digest": "sha256:…", "pushed": "2026-12-07T01:02:03.456789Z",
               "pulled": "2026-12-07T03:04:05.678901Z", "pulls": 12}, …]}

``pulled`` (the last pull of the tag, or null) and ``pulls`` (how many) appear when the pull
history is recorded (``fastreg.history.pulls``; see fastreg.retention.pulls).

Tags are sorted by name and paged like ``/tags/list`` (``n``, ``last``, a ``Link`` header), so a
repository with a million tags is read a page at a time.  ``pushed`` is the last push of the tag
(see fastreg.retention.history).
"""
from __future__ import annotations

from datetime import UTC, datetime

from ..retention import history, pulls
from .base import Context, json_listing, link_header, page_size, paginate
from .http import Request, Response


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def get(req: Request, ctx: Context) -> Response:
    reg = ctx.registry
    name = req.params["name"]
    tags = await reg.tags.all(name)                 # NAME_UNKNOWN for a repository without tags, as /tags/list
    n = page_size(req, max(reg.limits.tags_max, 1), strict=False)
    page, more = paginate(tags, n, req.query.get("last"))
    pulled = (await pulls.read(reg.driver, name)).tags if ctx.pulls is not None and page else None
    out = []
    for tag in page:
        tp = await history.tag_push(reg.driver, name, tag)
        if tp is not None:
            row: dict[str, str | int | None] = {"tag": tag, "digest": str(tp.digest), "pushed": _time(tp.pushed)}
            if pulled is not None:
                e = pulled.get(tag)
                row["pulled"], row["pulls"] = (_time(e[0]), int(e[1])) if e is not None else (None, 0)
            out.append(row)
    link = [link_header(f"/v2/_fastreg/history/{name}", n, page[-1])] if more and page else None
    return json_listing(req, {"name": name, "tags": out}, extra=link)
