"""GET /v2/<name>/referrers/<digest>: an OCI index of the manifests whose subject is <digest>."""
from __future__ import annotations

import orjson

from ..manifest import OCI_INDEX
from .base import Context
from .http import Request, Response


async def list_referrers(req: Request, ctx: Context) -> Response:
    d = ctx.digest(req.params["digest"])
    artifact_type = req.query.get("artifactType") or None
    manifests = await ctx.registry.manifests.referrers(req.params["name"], d, artifact_type)
    body = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    headers = [(b"content-type", OCI_INDEX.encode()), (b"content-length", str(len(body)).encode())]
    if artifact_type is not None:
        headers.append((b"oci-filters-applied", b"artifactType"))
    return Response(200, headers, body)
