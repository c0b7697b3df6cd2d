"""GET /v2/<name>/tags/list with n/last pagination and Link."""
from __future__ import annotations

import orjson

from .base import Context, link_header, page_size, paginate
from .http import Request, Response


async def list_tags(req: Request, ctx: Context) -> Response:
    reg = ctx.registry
    name = req.params["name"]
    tags = await reg.tags.all(name)
    n = page_size(req, max(reg.limits.tags_max, 1), strict=False)
    page, more = paginate(tags, n, req.query.get("last"))
    body = orjson.dumps({"name": name, "tags": page})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if more and page:
        headers.append(link_header(f"/v2/{name}/tags/list", n, page[-1]))
    return Response(200, headers, body)
