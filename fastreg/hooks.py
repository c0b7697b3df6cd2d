"""Extension points the request path calls, so auth, events and metrics plug in without
touching the handlers.  Each has a null implementation that costs one attribute test.

- ``Access``   (fastreg.auth):   decides whether a request may proceed; raises RegistryError
                                 (401/403 with WWW-Authenticate) otherwise.  Returns the actor
                                 (user name or None for anonymous), kept on the request.
- ``EventSink`` (fastreg.notify): records push/pull/delete/mount events.  ``emit`` is awaited
                                 before the response is sent, so a durable sink can persist
                                 the event first (at-least-once); it must never block on delivery.
- ``Observer``  (fastreg.metrics): told about every finished request, off the hot path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .api.http import Request


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
