"""GET /v2/_catalog with n/last pagination; n above the configured maximum is refused.

Without n, a page holds 100 repositories, as in Distribution (clients follow the Link header)."""
from __future__ import annotations

from .base import Context, json_listing, link_header, page_size, paginate
from .http import Request, Response

DEFAULT_PAGE = 100


async def list_repositories(req: Request, ctx: Context) -> Response:
    reg = ctx.registry
    n = page_size(req, reg.limits.catalog_max, strict=True, default=DEFAULT_PAGE)
    repos = await reg.catalog.repositories()
    page, more = paginate(repos, n, req.query.get("last"))
    link = [link_header("/v2/_catalog", n, page[-1])] if more and page else None
    return json_listing(req, {"repositories": page}, extra=link)
