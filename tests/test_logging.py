"""Structured logs: JSON lines with the request id, the access log, no secrets."""
from __future__ import annotations

import json
import linecache
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.hooks import request_state
from fastreg.observability.logging import JSONFormatter, TextFormatter, _RequestId, current_scope, log_access
from tests.e2e.helpers import push_blob, unique_repo
from tests.notify.conftest import Receiver


def _record(msg: str, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("fastreg.test", logging.WARNING, __file__, 1, msg, None, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_formatter_fields_and_request_id() -> None:
    scope: dict[str, Any] = {"type": "http"}
    token = current_scope.set(scope)
    try:
        rec = _record("hello %s")
        rec.args = ("world",)
        _RequestId().filter(rec)
    finally:
        current_scope.reset(token)
    line = json.loads(JSONFormatter({"service": "registry"}).format(rec))
    assert line["msg"] == "hello world" and line["level"] == "warning" and line["service"] == "registry"
    assert line["http.request.id"] == request_state(scope).request_id
    assert line["time"].endswith("Z")
    assert "@version" in json.loads(JSONFormatter(logstash=True).format(_record("x")))
    outside = _record("no request")
    _RequestId().filter(outside)
    assert "http.request.id" not in json.loads(JSONFormatter().format(outside))
    assert TextFormatter().format(outside).endswith("fastreg.test: no request")


def test_reportcaller_names_the_function_file_and_line() -> None:
    """log.reportcaller, as logrus's ReportCaller: "func" and "file" in JSON, a suffix in text."""
    logger = logging.getLogger("fastreg.test.caller")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("from here")
    finally:
        logger.removeHandler(handler)
    rec = records[0]
    line_no = rec.lineno
    assert linecache.getline(__file__, line_no).strip() == 'logger.warning("from here")'
    line = json.loads(JSONFormatter(caller=True).format(rec))
    assert line["func"] == "test_logging.test_reportcaller_names_the_function_file_and_line"
    assert line["file"] == f"{__file__}:{line_no}"
    assert "func" not in json.loads(JSONFormatter().format(rec))
    assert TextFormatter(caller=True).format(rec).endswith(f"{__file__}:{line_no}]")


def test_access_line_redacts_upload_state(caplog: pytest.LogCaptureFixture) -> None:
    scope = {"method": "PATCH", "path": "/v2/a/blobs/uploads/u",
             "query_string": b"_state=SECRETSTATE&x=1&refresh_token=RT&my_state=keep",
             "headers": [(b"user-agent", b"ua/1"), (b"authorization", b"Bearer TOKEN")],
             "client": ("127.0.0.1", 5555), "http_version": "1.1"}
    with caplog.at_level(logging.INFO, logger="fastreg.access"):
        logging.getLogger("fastreg.access").disabled = False
        log_access(scope, 202, 0, 0.0123)
    rec = caplog.records[-1]
    text = TextFormatter().format(rec)
    assert text.startswith('127.0.0.1 - - [')
    assert ('"PATCH /v2/a/blobs/uploads/u?_state=REDACTED&x=1&refresh_token=REDACTED&my_state=keep HTTP/1.1" '
            '202 0 "" "ua/1"') in text
    js = json.loads(JSONFormatter().format(rec))
    assert js["http.response.status"] == 202 and js["http.request.useragent"] == "ua/1"
    assert js["http.response.duration"] == "12.300ms"
    assert "SECRETSTATE" not in text + json.dumps(js) and "TOKEN" not in text + json.dumps(js)


@pytest.mark.e2e
def test_server_json_logs_with_request_ids(fastreg_factory: Any, tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        srv = fastreg_factory({
            "log": {"level": "info", "formatter": "json", "fields": {"service": "registry"}},
            "notifications": {"endpoints": [{"name": "hook", "url": receiver.url}]},
            "fastreg": {"notifications": {"allowprivate": True}}},
            env={"XDG_STATE_HOME": str(tmp_path / "state")})
        repo = unique_repo("logs")
        with httpx.Client(base_url=srv.url, timeout=30, headers={"User-Agent": "logs-test/1"},
                          auth=("alice", "hunter2-password")) as c:
            digest = push_blob(c, repo, b"logged blob")
            c.get("/v2/", headers={"Authorization": "Bearer sekrit-token-value"})
        ev = receiver.wait_for(lambda e: len(e) >= 1, log=srv.log)[0]
    finally:
        receiver.stop()
    raw = srv.log().splitlines()
    assert raw and all(x.startswith("{") for x in raw), raw[:5]     # granian's own lines too
    lines = [json.loads(x) for x in raw]
    assert any(x["logger"] == "granian" for x in lines)          # granian's, under its public name
    access = [x for x in lines if x.get("msg") == "response completed"
              and x["http.request.useragent"] == "logs-test/1"]
    assert len(access) == 3                             # POST, PUT, GET /v2/ (not the fixture's probes)
    put = next(x for x in access if x["http.request.method"] == "PUT")
    assert put["http.response.status"] == 201 and put["http.request.useragent"] == "logs-test/1"
    assert put["service"] == "registry" and put["level"] == "info"
    assert put["http.request.uri"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert "_state=REDACTED" in put["http.request.uri"] and f"digest={digest}".replace(":", "%3A") in \
        put["http.request.uri"]
    assert put["http.response.duration"].endswith("ms")
    # the push event carries the id of the request that caused it
    assert ev["request"]["id"] == put["http.request.id"]
    assert len({x["http.request.id"] for x in access}) == 3
    text = srv.log()
    for secret in ("hunter2-password", "sekrit-token-value", "YWxpY2U6aHVudGVyMi1wYXNzd29yZA"):
        assert secret not in text
