"""Logging shared by the CLI, granian's main process and its workers (Distribution's ``log:`` keys).

* ``log.level``: error | warn | info | debug.
* ``log.formatter``: ``text`` (default; one line per record, for a terminal), ``json`` (one JSON
  object per line: ``time``, ``level``, ``msg``, ``logger``, the ``log.fields``, and
  ``http.request.id`` inside a request), ``logstash`` (json with ``@timestamp``/``@version``).
* ``log.fields``: static fields added to every JSON line (e.g. ``service: registry``).
* **Request id on every line** logged while a request is handled: ``App.http`` puts the ASGI
  scope in a context variable; the id itself (a UUID, the one webhook events carry as
  ``request.id``) is made only when something is logged or emitted.
* **Access log** (``fastreg.access``, level info, on unless ``log.accesslog.disabled``), one
  line per request: in text, Apache's combined format, as Distribution writes it; in JSON,
  Distribution's ``http.request.*`` / ``http.response.*`` fields.  The ``_state`` query value
  of upload URLs (a capability to write into the upload) and any ``token``, ``access_token``,
  ``refresh_token`` or ``password`` query value are replaced by ``REDACTED``; request headers
  (Authorization, cookies) and bodies are never logged.
"""
from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from ..hooks import request_state

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
          "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "fatal"}

# The ASGI scope of the request being handled by the current task (None outside requests).
current_scope: ContextVar[dict[str, Any] | None] = ContextVar("fastreg_request_scope", default=None)

access_log = logging.getLogger("fastreg.access")


def request_id(scope: dict[str, Any]) -> str:
    """The id of the request (made on first use, then kept in the scope for logs and events)."""
    st = request_state(scope)
    if st.request_id is None:
        st.request_id = str(uuid.uuid4())
    return st.request_id


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        scope = current_scope.get()
        record.request_id = request_id(scope) if scope is not None else None
        return True


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    def __init__(self, caller: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.caller = caller            # log.reportcaller: the function, file and line that logged

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            return _combined(access, record.created)
        line = super().format(record)
        if self.caller:
            line += f" [{record.module}.{record.funcName} {record.pathname}:{record.lineno}]"
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


class JSONFormatter(logging.Formatter):
    def __init__(self, fields: dict[str, Any] | None = None, logstash: bool = False, caller: bool = False) -> None:
        super().__init__()
        self.fields = dict(fields or {})
        self.logstash = logstash
        self.caller = caller            # log.reportcaller: "func" and "file" keys, as logrus writes them

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = dict(self.fields)
        if self.logstash:
            out["@timestamp"] = _iso(record.created)
            out["@version"] = "1"
        else:
            out["time"] = _iso(record.created)
        out["level"] = _LEVEL_NAMES.get(record.levelno, record.levelname.lower())
        out["logger"] = record.name
        access = getattr(record, "access", None)
        if access is not None:
            out["msg"] = "response completed"
            out.update({f"http.{k}": v for k, v in access.items()})
        else:
            out["msg"] = record.getMessage()
            if self.caller:
                out["func"] = f"{record.module}.{record.funcName}"
                out["file"] = f"{record.pathname}:{record.lineno}"
        rid = getattr(record, "request_id", None)
        if rid:
            out["http.request.id"] = rid
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "info", formatter: str = "", fields: dict[str, Any] | None = None,
                  accesslog: bool = True, caller: bool = False) -> None:
    """Configure the ``fastreg`` loggers (once per process; later calls adjust level and format)."""
    root = logging.getLogger("fastreg")
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    root.propagate = False
    kind = (formatter or "text").lower()
    fmt: logging.Formatter = (JSONFormatter(fields, logstash=kind == "logstash", caller=caller)
                              if kind in ("json", "logstash") else TextFormatter(caller))
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_RequestId())
        root.addHandler(handler)
    for h in root.handlers:
        h.setFormatter(fmt)
    access_log.disabled = not accesslog


def access_enabled() -> bool:
    return not access_log.disabled and access_log.isEnabledFor(logging.INFO)


# query values that are capabilities or credentials
_STATE = re.compile(r"(?<![^&?])((?:_state|refresh_token|access_token|token|password)=)[^&]*")


def log_access(scope: dict[str, Any], status: int, written: int, seconds: float) -> None:
    """One access-log record for a finished request (see the module docstring)."""
    qs = scope.get("query_string", b"")
    uri = scope.get("raw_path") or scope["path"].encode()
    if isinstance(uri, bytes):
        uri = uri.decode("latin-1")
    if qs:
        uri += "?" + _STATE.sub(r"\1REDACTED", qs.decode("latin-1"))
    headers = scope.get("headers") or ()
    ua = referer = ""
    for k, v in headers:
        if k == b"user-agent":
            ua = v.decode("latin-1")
        elif k == b"referer":
            referer = _STATE.sub(r"\1REDACTED", v.decode("latin-1"))
    client = scope.get("client")
    access = {"request.method": scope["method"], "request.uri": uri,
              "request.remoteaddr": f"{client[0]}:{client[1]}" if client else "",
              "request.useragent": ua, "request.referer": referer,
              "request.proto": f"HTTP/{scope.get('http_version', '1.1')}",
              "request.user": request_state(scope).actor or "",
              "response.status": status, "response.written": written,
              "response.duration": f"{seconds * 1000:.3f}ms"}
    access_log.info("%s %s %d", scope["method"], uri, status, extra={"access": access})


def _combined(a: dict[str, Any], created: float) -> str:
    """Apache's combined log format (what Distribution's access log writes)."""
    host = a["request.remoteaddr"].rsplit(":", 1)[0] or "-"
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(created))
    return (f'{host} - {a["request.user"] or "-"} [{when}] "{a["request.method"]} {a["request.uri"]} '
            f'{a["request.proto"]}" {a["response.status"]} {a["response.written"]} '
            f'"{a["request.referer"]}" "{a["request.useragent"]}"')


class _GranianLines(logging.Filter):
    """granian's own records, written by fastreg's formatters: logger ``granian`` (not its internal
    ``_granian``), and without granian's "Listening at" (fastreg logs "fastreg listening on ...",
    with the workers and the storage, at the same moment)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("_granian"):
            if record.getMessage().startswith("Listening at"):
                return False
            record.name = record.name[1:]
        return True


def granian_log_config(formatter: str, fields: dict[str, Any] | None = None,
                       caller: bool = False) -> dict[str, Any]:
    """A logging dictConfig for granian's own loggers: the same format as fastreg's lines (text
    or JSON), on stderr."""
    kind = (formatter or "text").lower()
    fmt: dict[str, Any] = ({"()": "fastreg.observability.logging.JSONFormatter", "fields": dict(fields or {}),
                            "logstash": kind == "logstash", "caller": caller}
                           if kind in ("json", "logstash")
                           else {"()": "fastreg.observability.logging.TextFormatter", "caller": caller})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"granian": {"()": "fastreg.observability.logging._GranianLines"}},
        "formatters": {"generic": fmt, "access": fmt},
        "handlers": {"console": {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                 "filters": ["granian"]},
                     "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
                    "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }
