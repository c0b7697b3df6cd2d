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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config

H2_MAX_HEADERS = 64 * 1024      # bytes of one HTTP/2 request's header list (HPACK-decoded, +32 per field)

log = logging.getLogger("fastreg.server")


class StartupError(Exception):
    """The registry cannot start (a port in use, a data directory it cannot write, a file it
    cannot read, a storage extra not installed): one line saying what and what to do.  `status`:
    2 when a configuration value is wrong (a path that names nothing), 1 when the machine is."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status

GRANIAN_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning",
                      "error": "error", "fatal": "critical", "panic": "critical"}


# glibc malloc, for a process that receives bodies in frames of up to ~400 KiB (mallopt(3)):
# (parameter, its environment variable, value).  By default glibc mmaps each such frame and
# hands the pages back when it is freed (and trims the heap past 128 KiB free), so every frame
# of an upload lands in fresh pages: page faults and zeroing.  Frames served from a heap that
# keeps up to 32 MiB free cost neither (the A/B measurement is in bench/RESULTS.md).
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


def serve(cfg: Config) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings, HTTP2Settings
    from granian.log import LogLevels

    from .config import dump_config, listen_address

    host, port = listen_address(cfg)
    host = listen_host(host, port, "http.addr")
    # Everything that can stop the start is checked here, in this process, before granian runs:
    # a failure is one line (StartupError) instead of a traceback from every worker.
    check_storage(cfg)
    check_auth_files(cfg)
    from .app import auth_configured
    if auth_configured(cfg):
        from .auth import build
        build(cfg)                  # fail here, with the config error, rather than in every worker
    check_tls_files(cfg.http.tls)
    probe_port(host, port, "http.addr")
    serving = hold_serving_lock(cfg)
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
    from .observability.logging import granian_log_config
    kwargs["log_dictconfig"] = granian_log_config(cfg.log.formatter, cfg.log.fields, caller=cfg.log.reportcaller)
    debug = _start_debug_listener(cfg, workers)
    log.debug("malloc tuned: %s", ", ".join(tune_malloc()) or "nothing")
    try:
        server = Granian(
            "fastreg.app:create_app", factory=True, address=host, port=port, interface=Interfaces.ASGI,
            workers=workers, loop=Loops.uvloop, http=mode, websockets=False, backlog=2048,
            log_level=LogLevels(GRANIAN_LOG_LEVELS.get(cfg.log.level.lower(), "info")),
            http1_settings=HTTP1Settings(header_read_timeout=max(1, int(cfg.fastreg.http.headertimeout * 1000))),
            # an HTTP/2 request's header list is bounded like an HTTP/1.1 head (granian's default: 16 MiB)
            http2_settings=HTTP2Settings(max_headers_size=H2_MAX_HEADERS),
            **kwargs,
        )
        # granian runs startup hooks once it has bound the listening socket
        server.on_startup(lambda: log.info("fastreg listening on %s://%s:%d (%d worker%s, %s)", scheme,
                                           f"[{host}]" if ":" in host else host, port, workers,
                                           "s" if workers > 1 else "", storage_description(cfg)))
        try:
            server.serve()
        except RuntimeError as exc:     # granian's bind, from Rust: e.g. "Address already in use (os error 98)"
            if "(os error" not in str(exc):
                raise
            raise StartupError(f"http.addr: cannot listen on {_fmt_addr(host, port)}: {exc}") from exc
    finally:
        if debug is not None:
            debug.stop()
        if serving is not None:
            os.close(serving)


def _fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def storage_description(cfg: Config) -> str:
    """Which storage a command works on, for its log and output: "filesystem storage at /var/lib/x",
    "s3 storage (bucket b, region r)"."""
    name = cfg.storage.driver_name
    params = getattr(cfg.storage, name, None)
    if name == "filesystem":
        return f"filesystem storage at {cfg.storage.filesystem_root}"
    if isinstance(params, dict):
        parts = [f"{k} {params[k]}" for k in ("bucket", "container", "accountname", "region", "regionendpoint",
                                                "rootdirectory", "driver") if params.get(k)]
        if name == "faulty" and isinstance(params.get("parameters"), dict):
            inner = params["parameters"]
            parts += [f"{k} {inner[k]}" for k in ("rootdirectory", "bucket") if inner.get(k)]
        if parts:
            return f"{name} storage ({', '.join(parts)})"
    return f"{name} storage"


# the object-store drivers, each an optional extra of the same name (pyproject.toml): importing
# the driver's module imports what the extra installs
_EXTRAS = ("s3", "azure", "gcs")


def check_storage(cfg: Config) -> None:
    """The storage driver's extra is installed; a filesystem data directory exists (made if
    missing, as Distribution does) and this user can write in it."""
    import importlib
    name = cfg.storage.driver_name
    params = getattr(cfg.storage, name, None)
    if name == "faulty" and isinstance(params, dict):
        name = str(params.get("driver") or "")
    if name in _EXTRAS:
        try:
            importlib.import_module(f"fastreg.storage.driver.backends.{name}")
        except ImportError:
            raise StartupError(f"storage driver {name} is not installed: pip install 'fastreg[{name}]'") from None
    if cfg.storage.driver_name == "filesystem":
        check_data_directory(cfg.storage.filesystem_root, cfg.storage.maintenance.readonly.enabled)


def check_data_directory(root: str, readonly: bool = False) -> None:
    """Read-only: the directory must exist and be readable (a read-only mount is fine)."""
    key = "storage.filesystem.rootdirectory"
    if readonly:
        if not os.path.isdir(root):
            raise StartupError(f"{key}: {root} is not a directory: a read-only registry serves an existing one")
        if not os.access(root, os.R_OK | os.X_OK):
            raise StartupError(f"{key}: cannot read {root}: give the user fastreg runs as read access to it")
        return
    try:
        os.makedirs(root, exist_ok=True)
    except FileExistsError:
        if os.path.islink(root):            # a symbolic link to nothing (makedirs does not follow it)
            raise StartupError(f"{key}: {root} is a symbolic link to {os.readlink(root)}, which does not exist: "
                               "create that directory, or point the link at one") from None
        raise StartupError(f"{key}: {root} is a file, not a directory: choose a directory") from None
    except OSError as exc:
        raise StartupError(f"{key}: cannot create {root}: {exc.strerror}: create it, or choose another "
                           "directory") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastreg-probe-", dir=root)
    except OSError as exc:
        raise StartupError(f"{key}: cannot write in {root}: {exc.strerror}: give the user fastreg runs as "
                           "write access to it (or serve read-only: storage.maintenance.readonly)") from None
    os.close(fd)
    os.unlink(probe)


def check_tls_files(tls: Any) -> None:
    for key, path in (("http.tls.certificate", tls.certificate), ("http.tls.key", tls.key),
                      *((f"http.tls.clientcas.{i}", p) for i, p in enumerate(tls.clientcas or []))):
        if path:
            _readable_file(key, path)


def check_auth_files(cfg: Config) -> None:
    """The htpasswd files the auth config names are files (Debian's config.yml names a directory)."""
    ht = cfg.auth.htpasswd
    paths = [("auth.htpasswd.path", ht.path if ht is not None else "")]
    ts = cfg.fastreg.auth.tokenservice
    if ts is not None:
        paths.append(("fastreg.auth.tokenservice.htpasswd", ts.htpasswd))
    for key, path in paths:
        if path and os.path.isdir(path):
            raise StartupError(f"{key}: {path} is a directory, not an htpasswd file: point it at a file, e.g. "
                               f"fastreg htpasswd add USER --file {os.path.join(path, 'htpasswd')}", 2)


def _readable_file(key: str, path: str) -> None:
    if os.path.isdir(path):
        raise StartupError(f"{key}: {path} is a directory: name the file", 2)
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise StartupError(f"{key}: {path} does not exist: check the path (fastreg gencerts DIR makes a "
                           "certificate and its key)", 2) from None
    except OSError as exc:
        raise StartupError(f"{key}: cannot read {path}: {exc.strerror}: check its permissions", 2) from None


def listen_host(host: str, port: int, key: str) -> str:
    """The IP address to listen on: `host` when it is one, else the address a host name resolves
    to, an IPv4 one first (granian takes addresses only; Distribution, in Go, listens on a name's
    first IPv4 address the same way)."""
    import ipaddress
    import socket
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise StartupError(f"{key}: cannot listen on {_fmt_addr(host, port)}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    return next((a for a in addresses if ":" not in a), addresses[0])


def probe_port(host: str, port: int, key: str) -> None:
    """Refuse an address something already listens on.  granian binds with SO_REUSEPORT, which lets
    the kernel give a second fastreg the same port (and half the connections); a plain bind, as
    here, fails with EADDRINUSE while any socket holds the port, SO_REUSEPORT or not.  SO_REUSEADDR
    only lets it through connections in TIME_WAIT (a restart)."""
    import errno
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"{key}: port {port} is in use on {host} (by another fastreg or another "
                                   "program): stop it, or choose another port") from None
            raise StartupError(f"{key}: cannot listen on {_fmt_addr(host, port)}: {exc.strerror}") from None


def hold_serving_lock(cfg: Config) -> int | None:
    """A shared flock on the filesystem data directory for as long as this registry serves it,
    unless it serves read-only: `fastreg check --repair` takes the exclusive lock to know that no
    registry writes there (see fastreg.maintenance.gc_cli).  The descriptor, or None."""
    if cfg.storage.driver_name != "filesystem" or cfg.storage.maintenance.readonly.enabled:
        return None
    import fcntl
    fd = os.open(cfg.storage.filesystem_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StartupError(f"storage.filesystem.rootdirectory: {cfg.storage.filesystem_root} is being "
                           "repaired (fastreg check --repair): start the registry when it is done") from None
    except OSError as exc:          # a filesystem without flock on directories (some network filesystems)
        os.close(fd)
        log.warning("storage.filesystem.rootdirectory: cannot lock %s (%s): fastreg check --repair will not see "
                    "that this registry serves it", cfg.storage.filesystem_root, exc.strerror)
        return None
    return fd


def _start_debug_listener(cfg: Config, workers: int) -> Any:
    """http.debug.addr: metrics, health and status on a thread of this (granian's main) process.

    Runs before granian starts the workers: the metrics sample directory must be in the
    environment the workers inherit (see fastreg.observability.metrics)."""
    from .config import debug_address
    from .observability import metrics

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
    from .observability.debug import DebugServer
    try:
        server = DebugServer(cfg, *addr, workers=workers)
    except OSError as exc:
        if made:
            import shutil
            shutil.rmtree(made, ignore_errors=True)
        import errno
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"http.debug.addr: port {addr[1]} is in use on {addr[0]}: stop what holds it, "
                               "or choose another port") from None
        raise StartupError(f"http.debug.addr: cannot listen on {_fmt_addr(*addr)}: {exc.strerror}") from None
    server.cleanup_dir = made
    server.start()
    log.info("debug listener on http://%s:%d (%s)", f"[{addr[0]}]" if ":" in addr[0] else addr[0],
                server.port, "metrics, health, status" if metrics.enabled(cfg) else "health, status")
    return server
