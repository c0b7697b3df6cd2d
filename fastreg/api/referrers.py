"""GET /v2/<name>/referrers/<digest>: an OCI index of the manifests whose subject is <digest>.

Paged by bytes: each response holds the descriptors that fit in ``fastreg.referrers.pagebytes``
(at least one), and a ``Link: <...>; rel="next"`` header when more follow (distribution-spec
"Listing Referrers": clients follow it).  The link's ``last`` is the digest the page ended on.
"""
from __future__ import annotations

from urllib.parse import quote

from ..manifest import OCI_INDEX
from .base import Context, json_body_listing
from .http import Request, Response, h


async def list_referrers(req: Request, ctx: Context) -> Response:
    name = req.params["name"]
    d = ctx.digest(req.params["digest"])
    artifact_type = req.query.get("artifactType") or None
    last = req.query.get("last")
    after = ctx.digest(last) if last else None
    page = await ctx.registry.manifests.referrers(name, d, artifact_type, after)
    extra = []
    if artifact_type is not None:
        extra.append((b"oci-filters-applied", b"artifactType"))
    if page.next_after is not None:
        query = f"last={quote(str(page.next_after), safe='')}"
        if artifact_type is not None:
            query += f"&artifactType={quote(artifact_type, safe='')}"
        extra.append(h("Link", f'</v2/{name}/referrers/{d}?{query}>; rel="next"'))
    body = b'{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}' % (OCI_INDEX.encode(),
                                                                     b",".join(page.descriptors))
    return json_body_listing(req, body, OCI_INDEX.encode(), extra)
