"""The registry's errors, in the vocabulary of the OCI distribution-spec ("Error Codes").

Services (``fastreg.registry``), manifest parsing and the proxy raise ``RegistryError(CODE, detail)``
and know nothing of HTTP.  The api layer (``fastreg.api.errors``) gives each code its status,
writes the spec's JSON envelope and adds the headers an error implies (``Range`` for a busy upload).
Code that sits beside the api layer (auth, rate limits, the token service) may also set an HTTP
status or headers of its own on the error (a challenge, ``Retry-After``); services never do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorCode:
    value: str
    message: str


def _codes(*rows: tuple[str, str]) -> dict[str, ErrorCode]:
    return {value: ErrorCode(value, message) for value, message in rows}


# The spec's codes first, then Distribution's extras.
CODES = _codes(
    ("BLOB_UNKNOWN", "blob unknown to registry"),
    ("BLOB_UPLOAD_INVALID", "blob upload invalid"),
    ("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"),
    ("DIGEST_INVALID", "provided digest did not match uploaded content"),
    ("MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry"),
    ("MANIFEST_INVALID", "manifest invalid"),
    ("MANIFEST_UNKNOWN", "manifest unknown to registry"),
    ("NAME_INVALID", "invalid repository name"),
    ("NAME_UNKNOWN", "repository name not known to registry"),
    ("SIZE_INVALID", "provided length did not match content length"),
    ("UNAUTHORIZED", "authentication required"),
    ("DENIED", "requested access to the resource is denied"),
    ("UNSUPPORTED", "the operation is unsupported"),
    ("TOOMANYREQUESTS", "too many requests"),
    ("TAG_INVALID", "manifest tag did not match URI"),
    ("RANGE_INVALID", "invalid content range"),
    ("PAGINATION_NUMBER_INVALID", "invalid number of results requested"),
    ("MANIFEST_UNVERIFIED", "manifest failed signature verification"),
    ("UNKNOWN", "unknown error"),
    ("UNAVAILABLE", "service unavailable"),
)


class RegistryError(Exception):
    """An error the client is answered with, by its spec code."""

    __slots__ = ("code", "detail", "headers", "message", "status")

    def __init__(self, code: str, detail: Any = None, *, status: int | None = None,
                 message: str | None = None, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        ec = CODES[code]
        self.code = ec
        self.detail = detail
        self.message = message or ec.message
        self.status = status            # None: the code's own status (fastreg.api.errors.STATUS)
        self.headers = headers or []    # set beside the api layer only (challenges, Retry-After)
        super().__init__(f"{code}: {self.message}" + (f" ({detail})" if detail is not None else ""))


class UploadBusy(RegistryError):
    """Another request is writing this upload session; ``size`` bytes of it are stored so far."""

    __slots__ = ("size",)

    def __init__(self, uuid: str, size: int) -> None:
        super().__init__("RANGE_INVALID", {"uuid": uuid, "detail": "another request is writing this upload"},
                         message="another request is writing this upload; ask for its state and resume")
        self.size = size


class BodyInterrupted(Exception):
    """The request body ended early (client went away, or fewer bytes than announced).

    Bytes received before it are written and consistent: the session can resume."""
