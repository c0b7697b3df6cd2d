"""The route table: data, not decorators.  Order matters: the first pattern that matches wins.

A path that matches a route with a method the route does not have answers 405.
Repository names may contain '/', so each pattern anchors on the resource keyword.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

from ..digest import InvalidDigest, UnsupportedDigest, parse_digest
from ..reference import valid_name, valid_tag, valid_upload_id
from . import blobs, catalog, history, manifests, referrers, tags, ui, uploads, usage
from .base import Context, get_base
from .errors import RegistryError
from .http import Request, Response

Handler = Callable[[Request, Context], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    handlers: dict[str, Handler]
    public: bool = False        # no access check (the web page's static files: they hold no data)
    literal: str = ""           # a part of the pattern every path it matches contains (a quick test first)

    @property
    def allow(self) -> str:
        return ", ".join(sorted(self.handlers))


def _route(name: str, pattern: str, public: bool = False, **handlers: Handler) -> Route:
    literal = max(re.split(r"\(\?P<\w+>[^)]*\)\??|/\?", pattern), key=len)
    assert not set(literal) & set("\\.^$*+?()[]{}|"), literal     # plain text, as the pattern matches it
    return Route(name, re.compile(pattern), handlers, public, literal)


ROUTES: tuple[Route, ...] = (
    _route("base", r"/v2/?", GET=get_base, HEAD=get_base),
    _route("catalog", r"/v2/_catalog", GET=catalog.list_repositories),
    # fastreg's own: push history (no repository name component starts with "_")
    _route("history", r"/v2/_fastreg/history/(?P<name>.+)", GET=history.get),
    _route("usage", r"/v2/_fastreg/usage/(?P<name>.+)", GET=usage.get),
    _route("tags", r"/v2/(?P<name>.+?)/tags/list", GET=tags.list_tags),
    _route("manifest", r"/v2/(?P<name>.+?)/manifests/(?P<reference>[^/]+)",
           GET=manifests.get, HEAD=manifests.get, PUT=manifests.put, DELETE=manifests.delete),
    _route("upload_start", r"/v2/(?P<name>.+?)/blobs/uploads/?", POST=uploads.start),
    _route("upload", r"/v2/(?P<name>.+?)/blobs/uploads/(?P<uuid>[^/]+)",
           GET=uploads.status, PATCH=uploads.patch, PUT=uploads.put, DELETE=uploads.cancel),
    _route("blob", r"/v2/(?P<name>.+?)/blobs/(?P<digest>[^/]+)",
           GET=blobs.get, HEAD=blobs.get, DELETE=blobs.delete),
    _route("referrers", r"/v2/(?P<name>.+?)/referrers/(?P<digest>[^/]+)", GET=referrers.list_referrers),
    # the web page: /ui redirects to /ui/; /ui/<file> is one of its files (never a deeper path)
    _route("ui", r"/ui(?P<file>/[^/]*)?", public=True, GET=ui.get, HEAD=ui.get),
)


def routing_path(path: str, raw_path: bytes | None) -> str:
    """The path to route on: the raw path with each segment percent-decoded on its own, so that an
    encoded slash (``..%2Fx``) stays inside its segment (as ``%2F``) and the grammar refuses it,
    instead of splitting the path anew after decoding."""
    if not raw_path or b"%" not in raw_path:
        return path
    return "/".join(unquote(seg).replace("/", "%2F") for seg in raw_path.decode("latin-1").split("/"))


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.literal in path:
            m = route.pattern.fullmatch(path)
            if m is not None:
                return route, m.groupdict()
    return None


READS = frozenset({"GET", "HEAD"})
READ_ROUTES = frozenset({"manifest", "blob", "tags", "upload", "history", "usage"})


def refuse_malformed(route: str, method: str, params: dict[str, str], *, allow_blake3: bool) -> None:
    """Check every name, reference, digest and upload id of a request against the spec's grammar
    before a handler (or a storage path) sees it.

    A read (GET/HEAD) of something malformed answers the 404 of the spec's endpoint table: it names
    nothing that can exist.  A write or a delete answers 400 with the ``*_INVALID`` code, as
    Distribution does.  The referrers API must never answer 404 when the registry supports it: 400
    for anything malformed there.
    """
    read = method in READS
    name = params.get("name")
    if name is not None and not valid_name(name):
        if read and route in READ_ROUTES:
            raise RegistryError("NAME_UNKNOWN", {"name": name})
        raise RegistryError("NAME_INVALID", {"name": name})
    uuid = params.get("uuid")
    if uuid is not None and not valid_upload_id(uuid):
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": uuid})
    reference = params.get("reference")
    if reference is not None:
        if ":" in reference:
            try:
                parse_digest(reference, allow_blake3=allow_blake3)
            except (InvalidDigest, UnsupportedDigest) as exc:
                if read:
                    raise RegistryError("MANIFEST_UNKNOWN", {"reference": reference}) from None
                raise RegistryError("DIGEST_INVALID", str(exc)) from None
        elif not valid_tag(reference):
            if read:
                raise RegistryError("MANIFEST_UNKNOWN", {"reference": reference})
            raise RegistryError("TAG_INVALID", {"tag": reference},
                                message="invalid tag: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
    digest = params.get("digest")
    if digest is not None:
        try:
            parse_digest(digest, allow_blake3=allow_blake3)
        except (InvalidDigest, UnsupportedDigest) as exc:
            if route == "blob" and read:
                raise RegistryError("BLOB_UNKNOWN", {"digest": digest}) from None
            raise RegistryError("DIGEST_INVALID", str(exc)) from None
