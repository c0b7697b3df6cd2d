"""GET /v2/_fastreg/usage/<name>: a repository's storage usage and the quotas that apply to it.

Access is checked as for the repository's tag list (``repository:<name>:pull``).  The document::

    {"name": "team-a/app", "bytes": 123456789,
     "quotas": [{"scope": "team-a/**", "key": "fastreg.quota.rules.0", "usage": 4567890123,
                 "limit": 10737418240}, …]}

``bytes`` is what the repository's manifests reference, counted once per blob (see fastreg.retention.quota),
as last recorded; null when nothing was recorded for it yet (no quota configured, or no push since
quotas were turned on).  ``usage`` is the total the limit is checked against (every repository the
rule covers), null before the first count.
"""
from __future__ import annotations

from .base import Context, json_listing
from .http import Request, Response


async def get(req: Request, ctx: Context) -> Response:
    name = req.params["name"]
    await ctx.registry.known(name)                  # NAME_UNKNOWN for a repository that does not exist
    if ctx.quotas is None:
        return json_listing(req, {"name": name, "bytes": None, "quotas": []})
    doc = await ctx.quotas.usage(name)
    return json_listing(req, {"name": name, "bytes": doc["bytes"], "quotas": doc["quotas"]})
