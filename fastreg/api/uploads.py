"""Blob uploads: POST /v2/<name>/blobs/uploads/ and GET/PATCH/PUT/DELETE on a session.

The state machine itself lives in ``fastreg.registry.uploads``; this module maps HTTP to it.
"""
from __future__ import annotations

from ..digest import parse_content_range
from ..errors import BodyInterrupted
from ..hooks import Target, request_state
from ..reference import valid_name
from ..registry.uploads import UploadState
from .base import Context
from .errors import RegistryError
from .http import Request, Response, h


def _session_response(status: int, req: Request, ctx: Context, st: UploadState) -> Response:
    token = ctx.registry.uploads.token(st)
    location = ctx.url(req, f"/v2/{st.name}/blobs/uploads/{st.uuid}?_state={token}")
    return Response(status, [h("Location", location), h("Range", st.range_header),
                             h("Docker-Upload-UUID", st.uuid), (b"content-length", b"0")])


def _blob_created(req: Request, ctx: Context, name: str, digest: str) -> Response:
    return Response(201, [h("Location", ctx.url(req, f"/v2/{name}/blobs/{digest}")),
                          h("Docker-Content-Digest", digest), (b"content-length", b"0")])


async def start(req: Request, ctx: Context) -> Response:
    ctx.check_writable()
    reg = ctx.registry
    name = req.params["name"]
    q = req.query
    mount = q.get("mount")
    # not allowed when access control refused pull on `from` (auth/controllers.py)
    if mount is not None and request_state(req.scope).mount_allowed:
        d = ctx.digest(mount)
        source = q.get("from") or None
        if source is not None and not valid_name(source):
            raise RegistryError("NAME_INVALID", {"from": source})
        info = await reg.blobs.mount(name, d, source)
        if info is not None:
            await ctx.emit("mount", req, Target(name, str(d), "application/octet-stream", info.size,
                                                from_repository=source))
            return _blob_created(req, ctx, name, str(d))
        # Not mountable: fall back to a fresh session (spec: 202), never a silent failure.
    digest = q.get("digest")
    if digest is not None:
        d = ctx.digest(digest)
        whole = await reg.uploads.put_whole(name, d, req.body())
        if isinstance(whole, int):              # stored with no session (small, on object stores)
            await ctx.emit("push", req, Target(name, str(d), "application/octet-stream", whole))
            return _blob_created(req, ctx, name, str(d))
        st = await reg.uploads.start(name)
        try:
            size = await reg.uploads.commit(st, d, whole)
        except BodyInterrupted as exc:
            await reg.uploads.cancel(name, st.uuid)
            raise RegistryError("SIZE_INVALID", str(exc)) from None
        except RegistryError as exc:
            if exc.code.value != "DIGEST_INVALID":     # commit cancels on a bad digest itself
                await _cancel_quietly(ctx, name, st.uuid)
            raise
        await ctx.emit("push", req, Target(name, str(d), "application/octet-stream", size))
        return _blob_created(req, ctx, name, str(d))
    st = await reg.uploads.start(name)
    return _session_response(202, req, ctx, st)


async def _cancel_quietly(ctx: Context, name: str, uuid: str) -> None:
    try:
        await ctx.registry.uploads.cancel(name, uuid)
    except RegistryError:
        pass


async def status(req: Request, ctx: Context) -> Response:
    p = req.params
    st = await ctx.registry.uploads.resume(p["name"], p["uuid"], req.query.get("_state"), check_offset=False)
    return _session_response(204, req, ctx, st)


def _check_content_range(req: Request, offset: int) -> None:
    raw = req.header(b"content-range")
    if raw is None:
        return
    try:
        start, end = parse_content_range(raw)
    except ValueError:
        raise RegistryError("RANGE_INVALID", {"content-range": raw}, message="malformed Content-Range") from None
    if start != offset:
        raise RegistryError("RANGE_INVALID", {"content-range": raw, "offset": offset},
                            message=f"chunk must start at offset {offset}",
                            headers=[h("Range", f"0-{max(offset - 1, 0)}")])
    cl = req.content_length()
    if cl is not None and cl != end - start + 1:
        raise RegistryError("RANGE_INVALID", {"content-range": raw, "content-length": cl},
                            message="Content-Range does not match Content-Length")


def _for_write(req: Request, ctx: Context) -> UploadState:
    """The session's state as the request's token carries it (checked before storage is touched);
    the upload store checks it against what is stored, under the session's writer lock, after
    the request's Content-Range (`_check_content_range`)."""
    ctx.check_writable()
    p = req.params
    return ctx.registry.uploads.verify(p["name"], p["uuid"], req.query.get("_state"))


async def patch(req: Request, ctx: Context) -> Response:
    st = _for_write(req, ctx)
    try:
        st = await ctx.registry.uploads.append(st, req.body(), lambda size: _check_content_range(req, size))
    except BodyInterrupted as exc:
        raise RegistryError("SIZE_INVALID", str(exc)) from None
    return _session_response(202, req, ctx, st)


async def put(req: Request, ctx: Context) -> Response:
    digest = req.query.get("digest")
    if not digest:
        raise RegistryError("DIGEST_INVALID", "the digest query parameter is required")
    d = ctx.digest(digest)
    st = _for_write(req, ctx)
    try:
        size = await ctx.registry.uploads.commit(st, d, req.body(), lambda size: _check_content_range(req, size))
    except BodyInterrupted as exc:
        raise RegistryError("SIZE_INVALID", str(exc)) from None
    await ctx.emit("push", req, Target(st.name, str(d), "application/octet-stream", size))
    return _blob_created(req, ctx, st.name, str(d))


async def cancel(req: Request, ctx: Context) -> Response:
    ctx.check_writable()
    p = req.params
    uploads = ctx.registry.uploads
    uploads.verify(p["name"], p["uuid"], req.query.get("_state"))
    await uploads.cancel(p["name"], p["uuid"])          # (BLOB_UPLOAD_UNKNOWN if there is no session)
    return Response(204, [(b"content-length", b"0")])
