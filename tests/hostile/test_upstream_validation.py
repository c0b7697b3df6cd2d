"""A proxied manifest is validated exactly as a pushed one: the manifest service's `put` (a push)
and `put_proxied` (what the pull-through cache stores) refuse the same bodies with the same code,
and a refused body leaves storage as it was.  The one difference is by design: a push must name
blobs the repository holds; the cache fetches them later."""
from __future__ import annotations

import asyncio
import json

import pytest

from fastreg.errors import RegistryError
from fastreg.registry import Limits, Registry
from fastreg.storage import layout
from fastreg.storage.driver.backends.inmemory import InMemoryDriver
from fastreg.storage.driver.base import PathNotFound

from .upstream import OCI_MANIFEST, digest, manifest_of

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = b'{"architecture":"amd64","os":"linux"}'
VALID = manifest_of(CONFIG, [b"layer"])


def _with(**changes: object) -> bytes:
    doc = json.loads(VALID)
    doc.update(changes)
    return json.dumps(doc).encode()


CASES: dict[str, tuple[bytes, str | None]] = {
    "valid": (VALID, OCI_MANIFEST),
    "valid-no-content-type": (VALID, None),
    "html-media-type": (_with(mediaType="text/html"), "text/html"),
    "html-content-type": (VALID, "text/html"),
    "crlf-media-type": (_with(mediaType=OCI_MANIFEST + "\r\nX: y"), None),
    "non-latin-1-media-type": (_with(mediaType=OCI_MANIFEST + "\u4e2d"), None),
    "duplicate-keys": (VALID[:-1] + b', "mediaType": "text/html"}', None),
    "case-variant-key": (VALID[:-1] + b', "Layers": []}', None),
    "schema1": (_with(schemaVersion=1), None),
    "schemaVersion-2.0": (VALID.replace(b'"schemaVersion": 2', b'"schemaVersion": 2.0'), None),
    "docker-without-media-type": (json.dumps({k: v for k, v in json.loads(VALID).items() if k != "mediaType"}
                                             ).encode(), DOCKER),
    "not-json": (b"<html></html>", "text/html"),
    "too-large": (VALID[:-1] + b', "annotations": {"x": "' + b"a" * 5000 + b'"}}', None),
}


def _registry() -> Registry:
    return Registry(InMemoryDriver(), secret=b"s", limits=Limits(manifest_max=4096))


async def _outcome(reg: Registry, proxied: bool, body: bytes, ctype: str | None) -> str:
    put = reg.manifests.put_proxied if proxied else reg.manifests.put
    try:
        await put("lib/app", "v1", body, ctype)
    except RegistryError as exc:
        return exc.code.value
    return "stored"


@pytest.mark.parametrize("case", list(CASES))
def test_proxied_manifests_are_refused_exactly_as_pushed_ones(case: str) -> None:
    body, ctype = CASES[case]

    async def main() -> None:
        pushed, proxied = _registry(), _registry()
        if case == "too-large":                    # a push's limit is the request body's (api layer)
            assert len(body) > pushed.limits.manifest_max
            push = "MANIFEST_INVALID"
        else:
            push = await _outcome(pushed, False, body, ctype)
        kept = await _outcome(proxied, True, body, ctype)
        if case.startswith("valid"):
            assert (push, kept) == ("MANIFEST_BLOB_UNKNOWN", "stored")      # blobs: fetched later
            assert (await proxied.tags.resolve("lib/app", "v1")) == proxied.manifests.parse_reference(digest(body))
        else:
            assert push == kept == "MANIFEST_INVALID", (push, kept)
            with pytest.raises(PathNotFound):              # nothing stored: not even a directory
                await proxied.driver.list(layout.ROOT)

    asyncio.run(main())
