"""GET /v2/_catalog with n/last pagination; n above the configured maximum is refused.

Without n, a page holds 100 repositories, as in Distribution (clients follow the Link header).

A user sees only the repositories they may pull: the access hook (fastreg.auth) puts a predicate
on the request (``RequestState.catalog_filter``) when an access policy applies, and pages are cut from
the repositories it keeps.  A page stops after n kept names, so a request costs at most one scan
from ``last`` to the n+1st visible name, never a filtered copy of the whole catalog.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from ..hooks import request_state
from .base import Context, json_listing, link_header, page_size, paginate
from .http import Request, Response

DEFAULT_PAGE = 100


async def list_repositories(req: Request, ctx: Context) -> Response:
    reg = ctx.registry
    n = page_size(req, reg.limits.catalog_max, strict=True, default=DEFAULT_PAGE)
    repos = await reg.catalog.repositories()
    keep = request_state(req.scope).catalog_filter
    last = req.query.get("last")
    page, more = paginate(repos, n, last) if keep is None else paginate_filtered(repos, n, last, keep)
    link = [link_header("/v2/_catalog", n, page[-1])] if more and page else None
    return json_listing(req, {"repositories": page}, extra=link)


def paginate_filtered(items: list[str], n: int, last: str | None,
                      keep: Callable[[str], bool]) -> tuple[list[str], bool]:
    """Like ``paginate`` over the items `keep` accepts; `more` is true only if a kept item follows."""
    page: list[str] = []
    for i in range(bisect_right(items, last) if last else 0, len(items)):
        if keep(items[i]):
            if len(page) == n:
                return page, True
            page.append(items[i])
    return page, False
