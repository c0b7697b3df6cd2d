"""Oversized and malformed manifests against a real fastreg: each refused with its status and
code, nothing stored, and the tag they aimed at still names the held image."""
from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from .conftest import Seeded, expect
from .support import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, digest_of, raw

Unchanged = Callable[[], AbstractContextManager[None]]
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _good(seeded: Seeded) -> dict[str, Any]:
    img = seeded.image
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(img.config), "size": len(img.config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(b), "size": len(b)} for b in img.layers]}


def _cases(seeded: Seeded) -> list[tuple[str, bytes, str, int, str]]:
    """(id, body, content type, status, code)"""
    g = _good(seeded)
    cfg, layer = g["config"], g["layers"][0]
    cfg_json = json.dumps(cfg)

    def doc(**kw: Any) -> bytes:
        d = {**g, **kw}
        return json.dumps({k: v for k, v in d.items() if v is not None}).encode()

    big = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","x":"' + b"a" * (4 << 20) + b'"}'
    return [
        ("over 4 MiB", big, OCI_MANIFEST, 413, "SIZE_INVALID"),
        ("manifests and layers", doc(manifests=[]), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("index with layers", doc(mediaType=OCI_INDEX, manifests=[]), OCI_INDEX, 400, "MANIFEST_INVALID"),
        ("mediaType vs Content-Type", doc(), OCI_INDEX, 400, "MANIFEST_INVALID"),
        ("mediaType vs docker Content-Type", doc(), DOCKER_MANIFEST, 400, "MANIFEST_INVALID"),
        ("Content-Type text/plain", doc(), "text/plain", 400, "MANIFEST_INVALID"),
        ("unknown mediaType", doc(mediaType="application/x-evil"), "application/x-evil", 400, "MANIFEST_INVALID"),
        ("mediaType not a string", doc(mediaType=5), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("layer size too small", doc(layers=[{**layer, "size": layer["size"] - 1}]), OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),
        ("layer size too large", doc(layers=[{**layer, "size": layer["size"] + 1}]), OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),
        ("config size wrong", doc(config={**cfg, "size": 1}), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("size negative", doc(layers=[{**layer, "size": -1}]), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("size float", doc(layers=[{**layer, "size": float(layer["size"])}]), OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),
        ("size string", doc(layers=[{**layer, "size": str(layer["size"])}]), OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),
        ("size 2**70", doc(layers=[{**layer, "size": 2 ** 70}]), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("size 1e400", doc().replace(f'"size": {layer["size"]}'.encode(), b'"size": 1e400'), OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),
        ("huge number", b'{"schemaVersion":2,"x":1' + b"0" * 100_000 + b"}", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("schemaVersion 2**80", b'{"schemaVersion":' + str(2 ** 80 + 2).encode() + b"}", OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),
        ("schemaVersion 2.0", doc(schemaVersion=2.0), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("schemaVersion 1", doc(schemaVersion=1), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("missing config", doc(config=None), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("missing schemaVersion", doc(schemaVersion=None), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("descriptor without digest", doc(layers=[{"mediaType": OCI_LAYER, "size": 1}]), OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),
        ("descriptor without mediaType", doc(layers=[{"digest": layer["digest"], "size": layer["size"]}]),
         OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("layers not a list", doc(layers={"a": layer}), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("layer null", doc(layers=[None]), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("digest traversal", doc(layers=[{**layer, "digest": "sha256:../../../../etc/passwd"}]), OCI_MANIFEST,
         400, "MANIFEST_INVALID"),
        ("digest uppercase", doc(layers=[{**layer, "digest": layer["digest"].upper()}]), OCI_MANIFEST, 400,
         "MANIFEST_INVALID"),
        ("unknown layer", doc(layers=[{**layer, "digest": "sha256:" + "e" * 64}]), OCI_MANIFEST, 400,
         "MANIFEST_BLOB_UNKNOWN"),
        ("annotations not strings", doc(annotations={"a": 1}), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("subject malformed", doc(subject={"mediaType": OCI_MANIFEST, "digest": "sha256:zz", "size": 1}),
         OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("deep nesting 100000", b'{"schemaVersion":2,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", OCI_MANIFEST,
         400, "MANIFEST_INVALID"),
        ("deep nesting of objects", b'{"schemaVersion":2,"x":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
         OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        # duplicate keys: parsers disagree on which wins (fixed: fastreg took the last silently)
        ("duplicate schemaVersion", b'{"schemaVersion":1,' + doc()[1:], OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("duplicate layers", doc()[:-1] + b',"layers":[]}', OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("duplicate digest in a descriptor",
         doc().replace(b'"digest": "' + cfg["digest"].encode() + b'"',
                       b'"digest": "sha256:' + b"e" * 64 + b'", "digest": "' + cfg["digest"].encode() + b'"'),
         OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("case-variant Layers (Go reads it)", doc()[:-1] + b',"Layers":[]}', OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("case-variant config Digest", doc().replace(cfg_json.encode(), cfg_json[:-1].encode()
                                                     + b', "DIGEST": "sha256:' + b"e" * 64 + b'"}'),
         OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("invalid UTF-8", doc()[:-1] + b',"x":"\xff\xfe"}', OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("lone surrogate escape", doc()[:-1] + b',"x":"\\ud800"}', OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("NUL in a string", doc()[:-1] + b',"x":"\x00"}', OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("NaN", doc()[:-1] + b',"x":NaN}', OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("trailing garbage", doc() + b"]", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("not an object", b"[2]", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("empty body", b"", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        ("BOM", b"\xef\xbb\xbf" + doc(), OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    ]


CASE_IDS = [c[0] for c in _cases(Seeded(None, None, type("I", (), {"config": b"", "layers": [b""]})()))]  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASE_IDS)
def test_malformed_manifest_refused(seeded: Seeded, unchanged: Unchanged, case: str) -> None:
    _, body, ctype, status, code = next(c for c in _cases(seeded) if c[0] == case)
    for ref in ("v1", "other", digest_of(body)):
        with unchanged():
            r = seeded.client.put(f"/v2/held/app/manifests/{ref}", content=body, headers={"content-type": ctype})
        expect(r, status, code if not ref.startswith("sha256:") or code != "SIZE_INVALID" else None)


def test_duplicate_keys_in_annotations_refused_but_case_variants_kept(seeded: Seeded, unchanged: Unchanged) -> None:
    """Annotation keys are free text: "org.Foo" and "org.foo" may both be there; exact duplicates may not."""
    g = _good(seeded)
    ok = json.dumps({**g, "annotations": {"org.Foo": "1", "org.foo": "2"}}).encode()
    r = seeded.client.put("/v2/held/app/manifests/annotated", content=ok, headers={"content-type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    dup = ok[:-2] + b', "org.foo": "3"}}'
    with unchanged():
        r = seeded.client.put("/v2/held/app/manifests/annotated", content=dup, headers={"content-type": OCI_MANIFEST})
    expect(r, 400, "MANIFEST_INVALID")
    assert seeded.client.get("/v2/held/app/manifests/annotated").content == ok


def test_manifest_body_shorter_than_content_length(seeded: Seeded, unchanged: Unchanged) -> None:
    """Content-Length promises more than is sent, then the client closes: nothing is stored."""
    body = json.dumps(_good(seeded)).encode()
    with unchanged():
        import socket
        with socket.create_connection(("127.0.0.1", seeded.port)) as s:
            s.sendall(f"PUT /v2/held/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\n"
                      f"Content-Length: {len(body) + 100}\r\n\r\n".encode() + body)
            s.shutdown(socket.SHUT_WR)
            try:
                s.settimeout(10)
                s.recv(4096)            # a 400 or a plain close, both fine: nothing may be stored
            except OSError:
                pass


def test_manifest_body_longer_than_content_length(seeded: Seeded, unchanged: Unchanged) -> None:
    """Content-Length shorter than the body: the server reads only what was announced — a
    truncated JSON document, refused; the rest is not taken as part of the manifest."""
    body = json.dumps({**_good(seeded), "annotations": {"x": "y"}}).encode()
    with unchanged():
        r = raw(seeded.port, "PUT", "/v2/held/app/manifests/v1", headers={"Content-Type": OCI_MANIFEST},
                body=body, content_length=len(body) - 10)
    expect(r, 400, "MANIFEST_INVALID")
