"""HEAD/GET/PUT/DELETE /v2/<name>/manifests/<reference>."""
from __future__ import annotations

from ..digest import Digest
from ..hooks import Target
from ..registry.manifests import StoredManifest
from .base import Context
from .errors import RegistryError
from .http import Request, Response, h

# A stored manifest's answer headers, built once: (digest, media type, size) -> (digest text, headers)
_HEADERS: dict[tuple[Digest, str, int], tuple[str, list[tuple[bytes, bytes]]]] = {}
HEADERS_KEPT = 4096


def _headers(sm: StoredManifest) -> tuple[str, list[tuple[bytes, bytes]]]:
    key = (sm.digest, sm.media_type, len(sm.body))
    hit = _HEADERS.get(key)
    if hit is None:
        dstr = str(sm.digest)
        hit = dstr, [h("Content-Type", sm.media_type), h("Docker-Content-Digest", dstr),
                     h("ETag", f'"{dstr}"'), h("Content-Length", len(sm.body))]
        if len(_HEADERS) >= HEADERS_KEPT:
            _HEADERS.clear()
        _HEADERS[key] = hit
    return hit


async def get(req: Request, ctx: Context) -> Response:
    sm = await ctx.registry.manifests.get(req.params["name"], req.params["reference"])
    dstr, kept = _headers(sm)
    if ctx.pulls is not None:       # a GET pulls the manifest; a GET or HEAD by tag resolves the tag
        ctx.pulls.record(req.params["name"], _tag(req.params["reference"]), dstr if req.method == "GET" else None)
    headers = kept.copy()
    inm = req.header(b"if-none-match")
    if inm is not None and inm.strip() in (f'"{dstr}"', dstr):
        return Response(304, headers[1:3])
    if req.method == "HEAD":
        return Response(200, headers, b"")
    if ctx.events is not None:
        await ctx.emit("pull", req, Target(req.params["name"], dstr, sm.media_type, len(sm.body),
                                           _tag(req.params["reference"]), manifest=sm.body))
    return Response(200, headers, sm.body)


def _tag(reference: str) -> str | None:
    """The tag a reference names, or None for a digest (digests contain ':', tags cannot)."""
    return None if ":" in reference else reference


async def put(req: Request, ctx: Context) -> Response:
    ctx.check_writable()
    reg = ctx.registry
    name = req.params["name"]
    body = await req.read(reg.limits.manifest_max)
    d, parsed = await reg.manifests.put(name, req.params["reference"], body, req.header(b"content-type"))
    headers = [h("Location", ctx.url(req, f"/v2/{name}/manifests/{d}")), h("Docker-Content-Digest", str(d)),
               (b"content-length", b"0")]
    if parsed.subject is not None:
        headers.append(h("OCI-Subject", str(parsed.subject.digest)))
    await ctx.emit("push", req, Target(name, str(d), parsed.media_type, len(body), _tag(req.params["reference"]),
                                       manifest=body))
    return Response(201, headers)


async def delete(req: Request, ctx: Context) -> Response:
    reg = ctx.registry
    if not reg.delete_enabled:
        raise RegistryError("UNSUPPORTED", "deletes are disabled (storage.delete.enabled)")
    ctx.check_writable()
    name, ref = req.params["name"], req.params["reference"]
    await reg.manifests.delete(name, ref)
    tag = _tag(ref)
    await ctx.emit("delete", req, Target(name, "" if tag else ref, "", 0, tag))
    return Response(202, [(b"content-length", b"0")])
