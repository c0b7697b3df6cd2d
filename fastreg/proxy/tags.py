"""Tag lists of a proxied repository: forwarded to upstream (bounded, with a deadline), and
answered only with what was checked — a list of valid tag names under the local repository name,
and a ``Link`` to the next page rebuilt from its ``last`` and ``n`` (never the upstream's header
as sent).  When upstream cannot answer (or answers nonsense), the local list is served."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from ..api.base import json_listing, link_header, page_size
from ..api.http import Request, Response
from ..reference import valid_tag
from .upstream import Upstream, UpstreamError

log = logging.getLogger("fastreg.proxy")

_NEXT = re.compile(r'<([^<>]*)>\s*;\s*rel="?next"?')
TAG_BYTES = 160                 # a bound on one tag's share of a tag list's JSON (a tag is <= 128)


def tag_list_limit(tags_max: int) -> int:
    return max(tags_max, 1) * TAG_BYTES + 4096


async def forward(up: Upstream, remote: str, req: Request, tags_max: int,
                  refused: Callable[[str, str], None]) -> Response | None:
    """The upstream's tag list for local repository ``req.params["name"]``, or None (serve the
    local list)."""
    name = req.params["name"]
    query: dict[str, str] = {}
    if req.query.get("n"):
        query["n"] = str(page_size(req, max(tags_max, 1), strict=False))
    last = req.query.get("last")
    if last and valid_tag(last):
        query["last"] = last
    path = "tags/list" + (f"?{urlencode(query)}" if query else "")
    try:
        r, body = await up.fetch("GET", remote, path, tag_list_limit(tags_max))
    except UpstreamError as exc:
        refused(up.label, exc.reason)
        log.warning("proxy: tag list of %s from %s: %s; serving the local list", remote, up.remoteurl, exc)
        return None
    if r.status_code != 200:
        return None
    try:
        doc = orjson.loads(body)
        tags = doc.get("tags") if isinstance(doc, dict) else None
        tags = [] if tags is None else tags
        if not isinstance(tags, list) or not all(isinstance(t, str) and valid_tag(t) for t in tags):
            raise ValueError("tags is not a list of tag names")
    except (orjson.JSONDecodeError, ValueError) as exc:
        refused(up.label, "invalid")
        log.warning("proxy: tag list of %s from %s is not valid (%s); serving the local list", remote,
                    up.remoteurl, exc)
        return None
    extra = []
    m = _NEXT.search(r.headers.get("link", ""))
    if m is not None and tags:
        q = parse_qs(urlsplit(m.group(1)).query)
        n = (q.get("n") or [""])[0]
        nxt = (q.get("last") or [""])[0]
        if n.isascii() and n.isdigit() and len(n) < 10 and valid_tag(nxt):
            extra.append(link_header(f"/v2/{name}/tags/list", int(n), nxt))
    return json_listing(req, {"name": name, "tags": tags}, extra=extra)
