"""Launch granian (ASGI, uvloop, N worker processes) for a resolved config."""
from __future__ import annotations

import logging
import os
import secrets
from typing import Any

log = logging.getLogger("fastreg.server")

GRANIAN_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning",
                      "error": "error", "fatal": "critical", "panic": "critical"}


def serve(cfg: Any) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    from .config import dump_config, listen_address

    host, port = listen_address(cfg)
    workers = cfg.fastreg.workers or os.cpu_count() or 1
    if not cfg.http.secret and "FASTREG_SECRET" not in os.environ:
        # Every worker must sign upload URLs with the same key; replicas need http.secret.
        os.environ["FASTREG_SECRET"] = secrets.token_hex(32)
        if workers > 1:
            log.info("http.secret not set: generated one shared by this instance's workers")
    os.environ["FASTREG_RESOLVED_CONFIG"] = dump_config(cfg).decode()
    mode = {"1": HTTPModes.http1, "2": HTTPModes.http2}.get(str(cfg.fastreg.httpmode), HTTPModes.auto)
    if getattr(cfg.http.http2, "disabled", False):
        mode = HTTPModes.http1
    tls = cfg.http.tls
    kwargs: dict[str, Any] = {}
    if tls is not None and tls.certificate:
        kwargs.update(ssl_cert=tls.certificate, ssl_key=tls.key)
    scheme = "https" if kwargs else "http"
    where = cfg.storage.driver_name
    if cfg.storage.driver_name == "filesystem":
        where += f" at {cfg.storage.filesystem.rootdirectory}"
    log.warning("fastreg listening on %s://%s:%d (%d worker%s, %s storage)", scheme,
                f"[{host}]" if ":" in host else host, port, workers, "s" if workers > 1 else "", where)
    Granian(
        "fastreg.app:create_app", factory=True, address=host, port=port, interface=Interfaces.ASGI,
        workers=workers, loop=Loops.uvloop, http=mode, websockets=False, backlog=2048,
        log_level=GRANIAN_LOG_LEVELS.get(cfg.log.level.lower(), "info"), **kwargs,
    ).serve()
