"""The OCI distribution-spec error codes, as one table, and the JSON error envelope.

Handlers raise ``RegistryError(CODE, detail)``; ``error_body`` writes the envelope
``{"errors": [{"code", "message", "detail"}]}`` (distribution-spec v1.1 "Error Codes").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ErrorCode:
    value: str
    message: str
    status: int


def _codes(*rows: tuple[str, str, int]) -> dict[str, ErrorCode]:
    return {value: ErrorCode(value, message, status) for value, message, status in rows}


# value, message, HTTP status (spec codes first, then Distribution's extras).
CODES = _codes(
    ("BLOB_UNKNOWN", "blob unknown to registry", 404),
    ("BLOB_UPLOAD_INVALID", "blob upload invalid", 400),
    ("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404),
    ("DIGEST_INVALID", "provided digest did not match uploaded content", 400),
    ("MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", 400),
    ("MANIFEST_INVALID", "manifest invalid", 400),
    ("MANIFEST_UNKNOWN", "manifest unknown to registry", 404),
    ("NAME_INVALID", "invalid repository name", 400),
    ("NAME_UNKNOWN", "repository name not known to registry", 404),
    ("SIZE_INVALID", "provided length did not match content length", 400),
    ("UNAUTHORIZED", "authentication required", 401),
    ("DENIED", "requested access to the resource is denied", 403),
    ("UNSUPPORTED", "the operation is unsupported", 405),
    ("TOOMANYREQUESTS", "too many requests", 429),
    ("TAG_INVALID", "manifest tag did not match URI", 400),
    ("RANGE_INVALID", "invalid content range", 416),
    ("PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400),
    ("MANIFEST_UNVERIFIED", "manifest failed signature verification", 400),
    ("UNKNOWN", "unknown error", 500),
    ("UNAVAILABLE", "service unavailable", 503),
)


class RegistryError(Exception):
    """An error answered to the client with the spec's envelope."""

    __slots__ = ("code", "detail", "headers", "message", "status")

    def __init__(self, code: str, detail: Any = None, *, status: int | None = None,
                 message: str | None = None, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        ec = CODES[code]
        self.code = ec
        self.detail = detail
        self.status = status or ec.status
        self.message = message or ec.message
        self.headers = headers or []
        super().__init__(f"{code}: {self.message}" + (f" ({detail})" if detail is not None else ""))


def error_body(*errors: RegistryError) -> bytes:
    return orjson.dumps({"errors": [
        {"code": e.code.value, "message": e.message, "detail": e.detail} for e in errors
    ]})
