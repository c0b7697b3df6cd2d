"""Launch granian (ASGI, uvloop, N worker processes) for a resolved config."""
from __future__ import annotations

import atexit
import ctypes
import logging
import math
import os
import secrets
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

H2_MAX_HEADERS = 64 * 1024      # bytes of one HTTP/2 request's header list (HPACK-decoded, +32 per field)

log = logging.getLogger("fastreg.server")

GRANIAN_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning",
                      "error": "error", "fatal": "critical", "panic": "critical"}


# glibc malloc, for a process that receives bodies in frames of up to ~400 KiB (mallopt(3)):
# (parameter, its environment variable, value).  By default glibc mmaps each such frame and
# hands the pages back when it is freed (and trims the heap past 128 KiB free), so every frame
# of an upload lands in fresh pages: page faults and zeroing, ~5 % of push-large's samples.
# With frames served from a heap that keeps up to 32 MiB free, push-large ran 643–768 MB/s
# against 518–740 (fastreg alone, 6 pushes each, alternated; bench/RESULTS.md); RSS +1 MiB.
_MALLOPT = ((-3, "MALLOC_MMAP_THRESHOLD_", 4 << 20),    # M_MMAP_THRESHOLD
            (-1, "MALLOC_TRIM_THRESHOLD_", 32 << 20),   # M_TRIM_THRESHOLD
            (-2, "MALLOC_TOP_PAD_", 4 << 20))           # M_TOP_PAD


def tune_malloc() -> list[str]:
    """Set the parameters above in this process (granian's workers are forked from it and
    inherit them); a parameter whose environment variable the user set is left to glibc.
    Returns the names set; nothing where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):       # musl and others: their own allocator, left alone
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return [env for param, env, value in _MALLOPT if env not in os.environ and mallopt(param, value) == 1]


def tls_options(tls: Any) -> dict[str, Any]:
    """granian's TLS arguments for ``http.tls``: certificate and key, Distribution's default
    minimum (TLS 1.2), and client-certificate verification (required) when ``clientcas`` is set.

    granian (rustls) reads PKCS#8 keys only, and one CA file: a PKCS#1/SEC1 key, as many
    Distribution installs have, is converted and several ``clientcas`` are joined, into private
    files that live as long as this process."""
    if not tls.certificate:
        return {}
    from granian.constants import SSLProtocols

    from .config import ConfigError
    if not tls.key:
        raise ConfigError("http.tls.key: required with http.tls.certificate")
    minimum = (tls.minimumtls or "tls1.2").lower()
    if minimum not in ("tls1.0", "tls1.1", "tls1.2", "tls1.3"):
        raise ConfigError(f"http.tls.minimumtls: {tls.minimumtls!r}; one of tls1.0, tls1.1, tls1.2, tls1.3")
    if minimum in ("tls1.0", "tls1.1"):
        log.warning("http.tls.minimumtls: %s is not offered by fastreg; TLS 1.2 is the minimum", minimum)
    opts: dict[str, Any] = {
        "ssl_cert": Path(tls.certificate), "ssl_key": Path(_pkcs8_key(tls.key)),
        "ssl_protocol_min": SSLProtocols.tls13 if minimum == "tls1.3" else SSLProtocols.tls12,
    }
    if tls.clientcas:
        opts.update(ssl_ca=Path(_joined(tls.clientcas)), ssl_client_verify=True)
    return opts


def _private_file(suffix: str, data: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="fastreg-tls-", suffix=suffix)   # mode 0600
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    atexit.register(_unlink_quietly, path)
    return path


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _pkcs8_key(path: str) -> str:
    with open(path, "rb") as f:
        pem = f.read()
    if b"-----BEGIN PRIVATE KEY-----" in pem:
        return path
    from cryptography.hazmat.primitives import serialization

    from .config import ConfigError
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"http.tls.key: {path}: not a usable PEM private key ({exc})") from None
    return _private_file(".key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))


def _joined(paths: list[str]) -> str:
    if len(paths) == 1:
        return paths[0]
    parts = []
    for p in paths:
        with open(p, "rb") as f:
            parts.append(f.read().rstrip(b"\n") + b"\n")
    return _private_file(".pem", b"".join(parts))


def serve(cfg: Any) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings, HTTP2Settings
    from granian.log import LogLevels

    from .config import dump_config, listen_address

    host, port = listen_address(cfg)
    from .app import auth_configured
    if auth_configured(cfg):
        from .auth import build
        build(cfg)                  # fail here, with the config error, rather than in every worker
    workers = cfg.fastreg.workers or os.cpu_count() or 1
    if not cfg.http.secret and "FASTREG_SECRET" not in os.environ:
        # Every worker must sign upload URLs with the same key; replicas need http.secret.
        os.environ["FASTREG_SECRET"] = secrets.token_hex(32)
        if workers > 1:
            log.info("http.secret not set: generated one shared by this instance's workers")
    os.environ["FASTREG_RESOLVED_CONFIG"] = dump_config(cfg).decode()
    os.environ["FASTREG_INSTANCE_ID"] = str(uuid.uuid4())     # webhook events' source.instanceID
    mode = {"1": HTTPModes.http1, "2": HTTPModes.http2}.get(str(cfg.fastreg.httpmode), HTTPModes.auto)
    if getattr(cfg.http.http2, "disabled", False):
        mode = HTTPModes.http1
    kwargs = tls_options(cfg.http.tls)
    if cfg.http.draintimeout > 0:
        # On SIGTERM granian stops accepting and lets requests in flight finish; Distribution's
        # http.draintimeout bounds that wait (unset: as long as they take).
        kwargs["workers_kill_timeout"] = max(1, math.ceil(cfg.http.draintimeout))
    scheme = "https" if kwargs else "http"
    where = cfg.storage.driver_name
    if cfg.storage.driver_name == "filesystem":
        where += f" at {cfg.storage.filesystem.rootdirectory}"
    log.warning("fastreg listening on %s://%s:%d (%d worker%s, %s storage)", scheme,
                f"[{host}]" if ":" in host else host, port, workers, "s" if workers > 1 else "", where)
    from .logging import granian_log_config
    logcfg = granian_log_config(cfg.log.formatter, cfg.log.fields)
    if logcfg is not None:
        kwargs["log_dictconfig"] = logcfg
    debug = _start_debug_listener(cfg, workers)
    log.debug("malloc tuned: %s", ", ".join(tune_malloc()) or "nothing")
    try:
        Granian(
            "fastreg.app:create_app", factory=True, address=host, port=port, interface=Interfaces.ASGI,
            workers=workers, loop=Loops.uvloop, http=mode, websockets=False, backlog=2048,
            log_level=LogLevels(GRANIAN_LOG_LEVELS.get(cfg.log.level.lower(), "info")),
            http1_settings=HTTP1Settings(header_read_timeout=max(1, int(cfg.fastreg.http.headertimeout * 1000))),
            # an HTTP/2 request's header list is bounded like an HTTP/1.1 head (granian's default: 16 MiB)
            http2_settings=HTTP2Settings(max_headers_size=H2_MAX_HEADERS),
            **kwargs,
        ).serve()
    finally:
        if debug is not None:
            debug.stop()


def _start_debug_listener(cfg: Any, workers: int) -> Any:
    """http.debug.addr: metrics, health and status on a thread of this (granian's main) process.

    Runs before granian starts the workers: the metrics sample directory must be in the
    environment the workers inherit (see fastreg.metrics)."""
    from . import metrics
    from .config import debug_address

    addr = debug_address(cfg)
    if addr is None:
        if cfg.http.debug.prometheus.enabled:
            log.warning("http.debug.prometheus.enabled needs http.debug.addr: metrics are off")
        return None
    made = None
    if metrics.enabled(cfg):
        had = os.environ.get(metrics.MULTIPROC_ENV)
        path = metrics.prepare_multiproc_dir()
        made = None if had else path
    from .debug import DebugServer
    server = DebugServer(cfg, *addr, workers=workers)
    server.cleanup_dir = made
    server.start()
    log.warning("debug listener on http://%s:%d (%s)", f"[{addr[0]}]" if ":" in addr[0] else addr[0],
                server.port, "metrics, health, status" if metrics.enabled(cfg) else "health, status")
    return server
