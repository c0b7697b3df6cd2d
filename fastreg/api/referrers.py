"""GET /v2/<name>/referrers/<digest>: an OCI index of the manifests whose subject is <digest>."""
from __future__ import annotations

from ..manifest import OCI_INDEX
from .base import Context, json_listing
from .http import Request, Response


async def list_referrers(req: Request, ctx: Context) -> Response:
    d = ctx.digest(req.params["digest"])
    artifact_type = req.query.get("artifactType") or None
    manifests = await ctx.registry.manifests.referrers(req.params["name"], d, artifact_type)
    applied = [(b"oci-filters-applied", b"artifactType")] if artifact_type is not None else None
    return json_listing(req, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests},
                        OCI_INDEX.encode(), applied)
