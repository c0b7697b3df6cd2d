"""Webhook notifications: events recorded durably before the response, delivered in the background.

``events``   the envelope (Distribution's format) · ``outbox``  the durable store (SQLite, group
commit) · ``webhooks``  delivery (one task per endpoint, retries, SSRF guard).  ``Notifier`` is
the ``EventSink`` the handlers call (see ``fastreg.hooks``).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .events import Source, build_event, encode
from .outbox import Outbox
from .webhooks import Dispatcher, EndpointSpec, NotifyMetrics, endpoints_from_config

if TYPE_CHECKING:
    from ..api.http import Request
    from ..config import Config
    from ..hooks import Target

log = logging.getLogger("fastreg.notify")


def default_outbox_dir(cfg: Config, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """``$XDG_STATE_HOME/fastreg/outbox/<storage id>`` (``~/.local/state`` without XDG_STATE_HOME).

    Local state, not the storage root (which replicas may share over a network filesystem,
    where SQLite's locks are not safe); named after the storage location, so the same config
    finds its outbox again after a restart and two registries on one host keep theirs apart."""
    st = cfg.storage
    if st.driver_name == "filesystem":
        ident = "filesystem:" + os.path.realpath(st.filesystem_root)
    else:
        ident = st.driver_name + ":" + repr(sorted((st.driver_params or {}).items()))
    state = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return str(Path(state) / "fastreg" / "outbox" / hashlib.sha256(ident.encode()).hexdigest()[:16])


class Notifier:
    """The EventSink: builds each event once and records one outbox row per interested endpoint."""

    def __init__(self, outbox: Outbox, specs: list[EndpointSpec], source: Source, *,
                 base_url: Any, poll: float = 0.5, metrics: NotifyMetrics | None = None,
                 include_references: bool = False) -> None:
        self.outbox = outbox
        self.specs = specs
        self.source = source
        self.base_url = base_url          # (req) -> "scheme://host", for target.url
        self.include_references = include_references    # notifications.events.includereferences
        self.dispatcher = Dispatcher(outbox, specs, poll, metrics)

    def start(self) -> None:
        self.dispatcher.start()

    async def emit(self, action: str, req: Request, target: Target) -> None:
        rows = None
        for spec in self.specs:
            if spec.wants(action, target.media_type):
                if rows is None:
                    event = build_event(action, req, target, self.source, self.base_url(req),
                                        self.include_references)
                    eid, body = event["id"], encode(event)
                    rows = []
                rows.append((spec.name, eid, body))
        if rows:
            await self.outbox.add(rows)
            self.dispatcher.wake()

    async def close(self) -> None:
        await self.dispatcher.close()
        await self.outbox.close()


def create_notifier(cfg: Config, port: int, base_url: Any, metrics: NotifyMetrics | None = None) -> Notifier | None:
    """The configured Notifier, started on the running loop; None when no endpoint is enabled."""
    specs = endpoints_from_config(cfg)
    if not specs:
        return None
    own = cfg.fastreg.notifications
    directory = own.outbox or default_outbox_dir(cfg)
    outbox = Outbox(directory, own.maxevents, on_drop=metrics.webhook_dropped if metrics else None)
    n = Notifier(outbox, specs, Source.local(port), base_url=base_url, poll=own.pollinterval, metrics=metrics,
                 include_references=cfg.notifications.events.includereferences)
    n.start()
    return n
