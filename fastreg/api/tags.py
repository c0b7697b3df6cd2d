"""GET /v2/<name>/tags/list with n/last pagination and Link."""
from __future__ import annotations

from .base import Context, json_listing, link_header, page_size, paginate
from .http import Request, Response


async def list_tags(req: Request, ctx: Context) -> Response:
    reg = ctx.registry
    name = req.params["name"]
    tags = await reg.tags.all(name)
    n = page_size(req, max(reg.limits.tags_max, 1), strict=False)
    page, more = paginate(tags, n, req.query.get("last"))
    link = [link_header(f"/v2/{name}/tags/list", n, page[-1])] if more and page else None
    return json_listing(req, {"name": name, "tags": page}, extra=link)
