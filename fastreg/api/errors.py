"""The HTTP side of fastreg's errors: each spec code's status, the headers an error implies, and
the JSON error envelope ``{"errors": [{"code", "message", "detail"}]}`` (distribution-spec v1.1
"Error Codes").  The errors themselves are domain errors (``fastreg.errors``).
"""
from __future__ import annotations

import orjson

from ..errors import CODES, BodyInterrupted, ErrorCode, RegistryError, UploadBusy

__all__ = ["CODES", "STATUS", "BodyInterrupted", "ErrorCode", "RegistryError", "UploadBusy", "error_body",
           "error_headers", "status_of"]

# spec code -> HTTP status (the spec's codes first, then Distribution's extras)
STATUS: dict[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "TAG_INVALID": 400,
    "RANGE_INVALID": 416,
    "PAGINATION_NUMBER_INVALID": 400,
    "MANIFEST_UNVERIFIED": 400,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
}
assert STATUS.keys() == CODES.keys()


def status_of(exc: RegistryError) -> int:
    return exc.status or STATUS[exc.code.value]


def error_headers(exc: RegistryError) -> list[tuple[bytes, bytes]]:
    """The headers an error implies, beside those set on it: a busy upload says how much is stored
    (Distribution's ``Range`` form: inclusive end, ``0-0`` for an empty upload)."""
    if isinstance(exc, UploadBusy):
        return [(b"range", f"0-{max(exc.size - 1, 0)}".encode()), *exc.headers]
    return exc.headers


def error_body(*errors: RegistryError) -> bytes:
    return orjson.dumps({"errors": [
        {"code": e.code.value, "message": e.message, "detail": e.detail} for e in errors
    ]})
