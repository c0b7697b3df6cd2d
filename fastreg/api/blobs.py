"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>."""
from __future__ import annotations

from ..digest import Digest, RangeNotSatisfiable, format_content_range, parse_range
from ..hooks import Target
from .base import Context
from .errors import RegistryError
from .http import Request, Response, h

# A blob's answer headers, built once: (digest, size) -> the 200 answer's headers (Content-Length last)
_HEADERS: dict[tuple[Digest, int], list[tuple[bytes, bytes]]] = {}
HEADERS_KEPT = 4096


def _headers(d: Digest, size: int) -> list[tuple[bytes, bytes]]:
    key = (d, size)
    hit = _HEADERS.get(key)
    if hit is None:
        dstr = str(d)
        hit = [(b"docker-content-digest", dstr.encode()), (b"etag", f'"{dstr}"'.encode()),
               (b"accept-ranges", b"bytes"), (b"cache-control", b"max-age=31536000"),
               (b"content-type", b"application/octet-stream"), h("Content-Length", size)]
        if len(_HEADERS) >= HEADERS_KEPT:
            _HEADERS.clear()
        _HEADERS[key] = hit
    return hit


async def get(req: Request, ctx: Context) -> Response:
    name = req.params["name"]
    d = ctx.digest(req.params["digest"])
    reg = ctx.registry
    info = await reg.blobs.stat(name, d)
    size = info.size
    kept = _headers(d, size)
    headers = kept[:-1]     # without Content-Length
    dstr = d.algorithm + ":" + d.hex
    inm = req.header(b"if-none-match")
    if inm is not None and inm.strip() in (f'"{dstr}"', dstr):
        return Response(304, headers)
    path = reg.blobs.data_path(d)
    if reg.redirect_every_read:
        # storage middleware: as Distribution's blob server, redirect before the method or a Range matter
        url = await reg.driver.redirect_url(path, req.method)
        if url is not None:
            if req.method == "GET":
                await ctx.emit("pull", req, Target(name, dstr, "application/octet-stream", size))
            return Response(307, [(b"location", url.encode()), (b"content-length", b"0")])
    rng = req.header(b"range")
    span = None
    if rng is not None:
        try:
            span = parse_range(rng, size)
        except RangeNotSatisfiable:
            raise RegistryError("RANGE_INVALID", {"range": rng, "size": size},
                                message="requested range not satisfiable",
                                headers=[h("Content-Range", f"bytes */{size}")]) from None
    if span is None:
        headers = kept.copy()
        if req.method == "HEAD":
            return Response(200, headers)
        redirect = await reg.driver.redirect_url(path, "GET")
        if ctx.events is not None:
            await ctx.emit("pull", req, Target(name, dstr, "application/octet-stream", size))
        if redirect is not None:
            return Response(307, [(b"location", redirect.encode()), (b"content-length", b"0")])
        return Response(200, headers, file=reg.driver.local_path(path), stream=reg.driver.reader(path))
    start, end = span
    length = end - start + 1
    headers.append(h("Content-Range", format_content_range(start, end, size)))
    headers.append(h("Content-Length", length))
    if req.method == "HEAD":
        return Response(206, headers)
    return Response(206, headers, stream=reg.driver.reader(path, start, length))


async def delete(req: Request, ctx: Context) -> Response:
    reg = ctx.registry
    if not reg.delete_enabled:
        raise RegistryError("UNSUPPORTED", "deletes are disabled (storage.delete.enabled)")
    ctx.check_writable()
    d = ctx.digest(req.params["digest"])
    await reg.manifests.unlink_blob(req.params["name"], d)
    await ctx.emit("delete", req, Target(req.params["name"], str(d), "", 0))
    return Response(202, [(b"docker-content-digest", str(d).encode()), (b"content-length", b"0")])
