"""Extension points the request path calls, so auth, events and metrics plug in without
touching the handlers.  Each has a null implementation that costs one attribute test.

- ``Access``   (fastreg.auth):   decides whether a request may proceed; raises RegistryError
                                 (401/403 with WWW-Authenticate) otherwise.  Returns the actor
                                 (user name or None for anonymous), kept on the request.
- ``EventSink`` (fastreg.notify): records push/pull/delete/mount events.  ``emit`` is awaited
                                 before the response is sent, so a durable sink can persist
                                 the event first (at-least-once); it must never block on delivery.
- ``Observer``  (fastreg.observability.metrics): told about every finished request, off the hot path.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .api.http import Request


@dataclass(slots=True)
class RequestState:
    """What the layers learn about a request and hand on (kept in the ASGI scope under ``fastreg``):
    the route matched, the actor access control named, whether a cross-repository mount may
    happen, the catalog filter of an access policy, the request id, the body bytes received and
    whether the body was read to its end."""

    route: str = "none"
    actor: str | None = None
    mount_allowed: bool = True               # False: access control refused pull on `from`
    catalog_filter: Callable[[str], bool] | None = None   # the repositories the caller may see
    request_id: str | None = None
    bytes_in: int = 0
    body_read: bool = False                  # the request body was read to its end (fastreg.api.http)


def request_state(scope: dict[str, Any]) -> RequestState:
    """The request's state, made on first use."""
    st = scope.get("fastreg")
    if st is None:
        st = scope["fastreg"] = RequestState()
    return st


@dataclass(frozen=True, slots=True)
class Target:
    """What an event is about (Distribution's event ``target``)."""

    repository: str
    digest: str
    media_type: str
    size: int
    tag: str | None = None
    from_repository: str | None = None     # mounts
    manifest: bytes | None = None          # a manifest's bytes (push, pull): target.references


class Access(Protocol):
    async def authorize(self, req: Request, route: str, name: str | None) -> str | None: ...


class EventSink(Protocol):
    async def emit(self, action: str, req: Request, target: Target) -> None: ...

    async def close(self) -> None: ...


class Observer(Protocol):
    def request_done(self, route: str, method: str, status: int, seconds: float,
                     bytes_in: int, bytes_out: int) -> None: ...
