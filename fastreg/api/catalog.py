"""GET /v2/_catalog with n/last pagination; n above the configured maximum is refused.

Without n, a page holds 100 repositories, as in Distribution (clients follow the Link header)."""
from __future__ import annotations

import orjson

from .base import Context, link_header, page_size, paginate
from .http import Request, Response

DEFAULT_PAGE = 100


async def list_repositories(req: Request, ctx: Context) -> Response:
    reg = ctx.registry
    n = page_size(req, reg.limits.catalog_max, strict=True, default=DEFAULT_PAGE)
    repos = await reg.catalog.repositories()
    page, more = paginate(repos, n, req.query.get("last"))
    body = orjson.dumps({"repositories": page})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if more and page:
        headers.append(link_header("/v2/_catalog", n, page[-1]))
    return Response(200, headers, body)
