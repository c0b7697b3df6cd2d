"""GET /ui/: the built-in read-only web page (``fastreg.ui.enabled``, on by default).

The page is plain HTML/CSS/JS shipped as package data in ``fastreg/webui`` (no build step, no
CDN).  It holds no data itself: the browser reads the registry's own v2 API, with the user's
credentials, so it sees exactly what that user may pull (the catalog is filtered by the access
policy, api/catalog.py).  These routes are public for that reason: a static file reveals nothing.

Serving: the files are read once into memory; a request names one of them exactly (a dict
lookup, so ``..``, ``%2e%2e`` or any other path is a 404, never a file-system path).  Each answer
has a strong ETag (SHA-256 of the bytes; If-None-Match → 304), ``Cache-Control: no-cache`` (the
browser revalidates, so an upgrade is seen at once), ``X-Content-Type-Options: nosniff`` (as every
answer of the server) and a
strict Content-Security-Policy: scripts and styles from this origin only, no inline code, no
frames, API calls to this origin (and to an external token realm, when one is configured).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .base import Context
from .errors import RegistryError
from .http import Request, Response, h

if TYPE_CHECKING:
    from ..config import Config

STATIC_DIR = Path(__file__).resolve().parent.parent / "webui"
PREFIX = "/ui/"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


class Site:
    """The page's files, in memory, and the headers every answer carries."""

    def __init__(self, directory: Path = STATIC_DIR, connect_src: tuple[str, ...] = ()) -> None:
        self.assets: dict[str, Asset] = {}
        for path in sorted(directory.iterdir()):
            ctype = CONTENT_TYPES.get(path.suffix)
            if ctype is None or not path.is_file():
                continue
            body = path.read_bytes()
            self.assets[path.name] = Asset(body, ctype, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        connect = " ".join(("'self'", *connect_src))
        self.csp = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                    f"connect-src {connect}; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
        self.headers = [h("Content-Security-Policy", self.csp),   # nosniff: the app, on every answer
                        h("X-Frame-Options", "DENY"), h("Referrer-Policy", "no-referrer"),
                        h("Cache-Control", "no-cache")]

    @classmethod
    def from_config(cls, cfg: Config) -> Site | None:
        """None when ``fastreg.ui.enabled`` is false."""
        if not cfg.fastreg.ui.enabled:
            return None
        return cls(connect_src=_token_realm_origin(cfg))


def _token_realm_origin(cfg: Config) -> tuple[str, ...]:
    """An external token service (``auth.token.realm`` on another origin) is called by the page."""
    token = cfg.auth.token
    realm = token.realm if token is not None else ""
    parts = urlsplit(realm or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return (f"{parts.scheme}://{parts.netloc}",)
    return ()


def _not_found(path: str) -> RegistryError:
    return RegistryError("UNSUPPORTED", {"path": path}, status=404, message="not found")


async def get(req: Request, ctx: Context) -> Response:
    site: Site | None = ctx.ui
    if site is None:
        raise _not_found(req.path)
    file = req.params.get("file")
    if not file:                                   # /ui → /ui/ (relative links resolve below it)
        return Response(308, [h("Location", PREFIX), (b"content-length", b"0")])
    asset = site.assets.get(file[1:] or "index.html")
    if asset is None:
        raise _not_found(req.path)
    headers = [h("Content-Type", asset.content_type), h("ETag", asset.etag), *site.headers]
    inm = req.header(b"if-none-match")
    if inm is not None and asset.etag in (t.strip() for t in inm.split(",")):
        return Response(304, headers)
    headers.append(h("Content-Length", len(asset.body)))
    return Response(200, headers, asset.body)
