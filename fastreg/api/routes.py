"""The route table: data, not decorators.  Order matters: the first pattern that matches wins.

A path that matches a route with a method the route does not have answers 405.
Repository names may contain '/', so each pattern anchors on the resource keyword.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import blobs, catalog, manifests, referrers, tags, ui, uploads
from .base import Context, get_base
from .http import Request, Response

Handler = Callable[[Request, Context], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    handlers: dict[str, Handler]
    public: bool = False        # no access check (the web page's static files: they hold no data)

    @property
    def allow(self) -> str:
        return ", ".join(sorted(self.handlers))


def _route(name: str, pattern: str, public: bool = False, **handlers: Handler) -> Route:
    return Route(name, re.compile(pattern), handlers, public)


ROUTES: tuple[Route, ...] = (
    _route("base", r"/v2/?", GET=get_base, HEAD=get_base),
    _route("catalog", r"/v2/_catalog", GET=catalog.list_repositories),
    _route("tags", r"/v2/(?P<name>.+)/tags/list", GET=tags.list_tags),
    _route("manifest", r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)",
           GET=manifests.get, HEAD=manifests.get, PUT=manifests.put, DELETE=manifests.delete),
    _route("upload_start", r"/v2/(?P<name>.+)/blobs/uploads/?", POST=uploads.start),
    _route("upload", r"/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)",
           GET=uploads.status, PATCH=uploads.patch, PUT=uploads.put, DELETE=uploads.cancel),
    _route("blob", r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)",
           GET=blobs.get, HEAD=blobs.get, DELETE=blobs.delete),
    _route("referrers", r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)", GET=referrers.list_referrers),
    # the web page: /ui redirects to /ui/; /ui/<file> is one of its files (never a deeper path)
    _route("ui", r"/ui(?P<file>/[^/]*)?", public=True, GET=ui.get, HEAD=ui.get),
)


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        m = route.pattern.fullmatch(path)
        if m is not None:
            return route, m.groupdict()
    return None
