"""The event envelope, as Distribution sends it (``notifications/event.go``).

One POST carries ``{"events": [event, ...]}`` with Content-Type ``MEDIA_TYPE``.  An event::

    {"id": "<uuid>", "timestamp": "2026-11-27T00:01:34.123456Z", "action": "push",
     "target": {"mediaType": ..., "size": ..., "digest": ..., "length": ..., "repository": ...,
                "fromRepository": ..., "url": ..., "tag": ...},
      # with notifications.events.includereferences, a manifest's target also has
     #   "references": [descriptor, ...]  (config and layers, or an index's manifests)
    "request": {"id": ..., "addr": ..., "host": ..., "method": ..., "useragent": ...},
     "actor": {"name": ...}, "source": {"addr": ..., "instanceID": ...}}

Empty fields are left out, as Go's ``omitempty`` does (``request.id``, ``method`` and
``useragent`` are always present).  The event id is made once, when the event is recorded: a
receiver sees the same id every time the event is redelivered, and drops duplicates by it.
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..hooks import request_state
from ..observability.logging import request_id

if TYPE_CHECKING:
    from ..api.http import Request
    from ..hooks import Target

# Distribution 2.x's envelope type (Distribution 3 renamed it v2 when it added
# target.references; fastreg sends those with notifications.events.includereferences and keeps
# the 2.x type, which receivers written for either accept).
MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
ACTIONS = ("push", "pull", "delete", "mount")

# Routes whose targets are manifests; every other emitting route is about a blob.
_MANIFEST_ROUTES = frozenset({"manifest"})


@dataclass(frozen=True, slots=True)
class Source:
    """The registry node generating events (Distribution's SourceRecord)."""

    addr: str
    instance_id: str

    @classmethod
    def local(cls, port: int) -> Source:
        """This host and port; the instance id is the one ``fastreg serve`` made for all its
        workers (``FASTREG_INSTANCE_ID``), new at each start."""
        instance = os.environ.get("FASTREG_INSTANCE_ID") or str(uuid.uuid4())
        return cls(f"{socket.gethostname()}:{port}", instance)


def timestamp(now: datetime | None = None) -> str:
    """RFC 3339 in UTC with a Z, as Go marshals time.Time."""
    return (now or datetime.now(UTC)).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _url(req: Request, base: str, target: Target) -> str:
    if not target.digest:
        return ""
    kind = "manifests" if request_state(req.scope).route in _MANIFEST_ROUTES else "blobs"
    return f"{base}/v2/{target.repository}/{kind}/{target.digest}"


_DESCRIPTOR_KEYS = ("mediaType", "digest", "size", "urls", "annotations", "platform", "artifactType")


def references(manifest: bytes) -> list[dict[str, Any]]:
    """What a manifest references, as Distribution 3's ``References()``: the config and layers of
    an image manifest, the manifests of an index (stored bytes, validated when pushed)."""
    try:
        doc = orjson.loads(manifest)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(doc, dict):
        return []
    found = [doc.get("config"), *(doc.get("layers") or ()), *(doc.get("manifests") or ())]
    return [{k: d[k] for k in _DESCRIPTOR_KEYS if k in d} for d in found if isinstance(d, dict)]


def build_event(action: str, req: Request, target: Target, source: Source, base_url: str,
                include_references: bool = False) -> dict[str, Any]:
    """The event for one action, as a dict ready for JSON (ids and time fixed now)."""
    scope = req.scope
    t: dict[str, Any] = {}
    if target.media_type:
        t["mediaType"] = target.media_type
    if target.size:
        t["size"] = target.size
    if target.digest:
        t["digest"] = target.digest
    if target.size:
        t["length"] = target.size
    t["repository"] = target.repository
    if target.from_repository:
        t["fromRepository"] = target.from_repository
    url = _url(req, base_url, target)
    if url:
        t["url"] = url
    if target.tag:
        t["tag"] = target.tag
    if include_references and target.manifest is not None:
        refs = references(target.manifest)
        if refs:
            t["references"] = refs
    r: dict[str, Any] = {"id": request_id(scope)}
    client = scope.get("client")
    if client:
        r["addr"] = f"{client[0]}:{client[1]}"
    host = req.header(b"host")
    if host:
        r["host"] = host
    r["method"] = req.method
    r["useragent"] = req.header(b"user-agent") or ""
    actor = request_state(scope).actor
    src = {"addr": source.addr, "instanceID": source.instance_id}
    return {"id": str(uuid.uuid4()), "timestamp": timestamp(), "action": action, "target": t,
            "request": r, "actor": {"name": actor} if actor else {}, "source": src}


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def envelope(events: list[bytes]) -> bytes:
    """Join already-encoded events into one envelope body (no re-encoding)."""
    return b'{"events":[' + b",".join(events) + b"]}"
