"""Repository-name and tag grammar (distribution-spec v1.1, "Pulling manifests").

    <name> : [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*
    <tag>  : [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
    <uuid> : [a-zA-Z0-9_=-][a-zA-Z0-9._=-]{0,127}      (an upload session id; Distribution's
             route allows [a-zA-Z0-9-_.=]+, fastreg issues UUIDs; "." and ".." are refused)

Names are limited to 255 characters, as Distribution does.  Digests are parsed by
``fastreg.digest.parse_digest``.  Nothing here touches storage: callers validate before
any storage path is built.
"""
from __future__ import annotations

import re

NAME_MAX = 255
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
UPLOAD_ID_RE = re.compile(r"[a-zA-Z0-9_=-][a-zA-Z0-9._=-]{0,127}")


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and NAME_RE.fullmatch(name) is not None


def valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def valid_upload_id(uuid: str) -> bool:
    """An upload session id that is safe as one path component (never '.' or '..')."""
    return UPLOAD_ID_RE.fullmatch(uuid) is not None


def is_digest_reference(reference: str) -> bool:
    """A manifest reference is a digest when it contains ':' (tags never do)."""
    return ":" in reference
