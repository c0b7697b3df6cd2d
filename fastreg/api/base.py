"""What every handler receives besides the request: the registry and URL building."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import xxhash

from ..digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from ..hooks import Access, EventSink, Target
from ..registry import Registry
from .errors import RegistryError
from .http import Request, Response, h

# digests parsed from request paths and queries (valid ones only), bounded
_PARSED: dict[tuple[str, bool], Digest] = {}
PARSED_KEPT = 4096


@dataclass(slots=True)
class Context:
    registry: Registry
    relative_urls: bool = False
    host: str | None = None          # http.host: external base URL, e.g. https://reg.example.com
    access: Access | None = None     # None: everyone may do everything (auth: none)
    events: EventSink | None = None  # None: no notifications configured
    ui: Any = None                   # the web page's files (api/ui.Site); None: fastreg.ui disabled
    quotas: Any = None               # storage quotas (fastreg.quota); None: none configured
    pulls: Any = None                # pull history recorder (fastreg.retention.pulls); None: not recorded

    async def emit(self, action: str, req: Request, target: Target) -> None:
        if self.events is not None:
            await self.events.emit(action, req, target)

    def url(self, req: Request, path: str) -> str:
        if self.relative_urls:
            return path
        if self.host:
            return self.host.rstrip("/") + path
        host = req.header(b"x-forwarded-host") or req.header(b"host")
        if not host:
            return path
        scheme = req.header(b"x-forwarded-proto") or req.scope.get("scheme", "http")
        return f"{scheme}://{host.split(',')[0].strip()}{path}"

    def digest(self, text: str) -> Digest:
        allow_blake3 = self.registry.allow_blake3
        d = _PARSED.get((text, allow_blake3))     # a blob's digest arrives on every pull of it
        if d is not None:
            return d
        try:
            d = parse_digest(text, allow_blake3=allow_blake3)
        except (InvalidDigest, UnsupportedDigest) as exc:
            raise RegistryError("DIGEST_INVALID", str(exc)) from None
        if len(_PARSED) >= PARSED_KEPT:
            _PARSED.clear()
        _PARSED[text, allow_blake3] = d
        return d

    def check_writable(self) -> None:
        if self.registry.readonly:
            raise RegistryError("UNSUPPORTED", "the registry is in read-only mode",
                                message="the registry is in read-only mode")


async def get_base(req: Request, ctx: Context) -> Response:
    return Response(200, [(b"content-type", b"application/json"), (b"content-length", b"2")],
                    b"" if req.method == "HEAD" else b"{}")


def page_size(req: Request, maximum: int, *, strict: bool, default: int | None = None) -> int:
    """The `n` query parameter: absent → default (or maximum); over maximum → 400 (strict) or clamped."""
    raw = req.query.get("n")
    if raw is None or raw == "":
        return maximum if default is None else min(default, maximum)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:      # "²".isdigit() is True
        raise RegistryError("PAGINATION_NUMBER_INVALID", {"n": raw})
    n = int(raw)
    if n > maximum:
        if strict:
            raise RegistryError("PAGINATION_NUMBER_INVALID", {"n": n, "max": maximum})
        n = maximum
    return n


def paginate(items: list[str], n: int, last: str | None) -> tuple[list[str], bool]:
    """Items after `last` (lexical), at most n; and whether more follow."""
    start = bisect_right(items, last) if last else 0
    page = items[start:start + n]
    return page, start + n < len(items)


def link_header(path: str, n: int, last: str) -> tuple[bytes, bytes]:
    return h("Link", f'<{path}?last={quote(last, safe="")}&n={n}>; rel="next"')


def json_listing(req: Request, doc: object, content_type: bytes = b"application/json",
                 extra: list[tuple[bytes, bytes]] | None = None) -> Response:
    """A listing (tags, catalog, referrers) as JSON, with a strong ETag (xxh3-64 of the body:
    a fast non-cryptographic hash is enough to tell a changed listing) and 304 on If-None-Match."""
    return json_body_listing(req, orjson.dumps(doc), content_type, extra)


def json_body_listing(req: Request, body: bytes, content_type: bytes = b"application/json",
                      extra: list[tuple[bytes, bytes]] | None = None) -> Response:
    """`json_listing` of a body already encoded."""
    etag = b'"' + xxhash.xxh3_64_hexdigest(body).encode() + b'"'
    headers = [(b"content-type", content_type), (b"etag", etag), *(extra or ())]
    inm = req.header(b"if-none-match")
    if inm is not None and etag.decode() in (t.strip() for t in inm.split(",")):
        return Response(304, headers)
    headers.append((b"content-length", str(len(body)).encode()))
    return Response(200, headers, body)
