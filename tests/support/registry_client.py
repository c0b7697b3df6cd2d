"""The tests' registry client: digests, blob/manifest/index builders, push and pull over HTTP.

Everything here talks the registry API through an ``httpx.Client`` whose ``base_url`` is the
registry: a real server (tests/support/server.py) or the app in-process (tests/support/asgi.py).
Builders return the exact bytes that are pushed, so tests can compare what comes back byte for
byte.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCTET = "application/octet-stream"

EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# A well-formed digest that no test ever pushes (the conformance suite's dummyDigest idea).
DUMMY_DIGEST = "sha256:" + "f" * 64

ERROR_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
    # Distribution's extras
    "TAG_INVALID", "RANGE_INVALID", "PAGINATION_NUMBER_INVALID", "MANIFEST_UNVERIFIED",
    "UNKNOWN", "UNAVAILABLE",
})


# -- digests ---------------------------------------------------------------------------------
def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm == "blake3":
        import blake3  # a project dependency
        return "blake3:" + blake3.blake3(data).hexdigest()
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


def unique_repo(prefix: str = "conformance") -> str:
    """A fresh repository name (lowercase, valid grammar) so tests do not see each other."""
    return f"e2e/{prefix}-{uuid.uuid4().hex[:10]}"


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


# -- descriptors and documents ----------------------------------------------------------------
@dataclass
class Blob:
    data: bytes
    media_type: str = OCTET
    algorithm: str = "sha256"

    @property
    def digest(self) -> str:
        return digest_of(self.data, self.algorithm)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()


def make_config(media_type: str = OCI_CONFIG) -> Blob:
    doc = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": [f"NONCE={uuid.uuid4().hex}"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return Blob(canonical(doc), media_type)


def make_layer(size: int = 1024, media_type: str = OCI_LAYER, algorithm: str = "sha256") -> Blob:
    return Blob(random_bytes(size), media_type, algorithm)


@dataclass
class Manifest:
    body: bytes
    media_type: str
    blobs: list[Blob] = field(default_factory=list)
    children: list[Manifest] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return digest_of(self.body)

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.body)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def make_manifest(config: Blob | None = None, layers: list[Blob] | None = None, *,
                  media_type: str = OCI_MANIFEST, subject: Manifest | dict[str, Any] | None = None,
                  artifact_type: str | None = None, annotations: dict[str, str] | None = None,
                  include_media_type: bool = True) -> Manifest:
    """An image manifest (OCI or Docker schema2) over the given blobs (made fresh if omitted)."""
    docker = media_type == DOCKER_MANIFEST
    if config is None:
        config = make_config(DOCKER_CONFIG if docker else OCI_CONFIG)
    if layers is None:
        layers = [make_layer(512, DOCKER_LAYER if docker else OCI_LAYER)]
    doc: dict[str, Any] = {"schemaVersion": 2}
    if include_media_type:
        doc["mediaType"] = media_type
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["config"] = config.descriptor()
    doc["layers"] = [layer.descriptor() for layer in layers]
    if subject is not None:
        doc["subject"] = subject.descriptor() if isinstance(subject, Manifest) else subject
    if annotations is not None:
        doc["annotations"] = annotations
    return Manifest(canonical(doc), media_type, [config, *layers])


def make_index(children: list[Manifest], *, media_type: str = OCI_INDEX,
               subject: Manifest | None = None, artifact_type: str | None = None,
               annotations: dict[str, str] | None = None) -> Manifest:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["manifests"] = [
        c.descriptor(platform={"architecture": "amd64", "os": "linux"}) for c in children
    ]
    if subject is not None:
        doc["subject"] = subject.descriptor()
    if annotations is not None:
        doc["annotations"] = annotations
    return Manifest(canonical(doc), media_type, children=children)


# -- HTTP helpers -----------------------------------------------------------------------------
def relative(location: str) -> str:
    """Path + query of a Location header (absolute or relative)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def q(location: str, **params: str) -> str:
    """`location` (made relative) with `params` added to its query.

    httpx's ``params=`` replaces a URL's query instead of merging it, which would drop the
    upload session's state parameter; always build session URLs with this.
    """
    return str(httpx.URL(relative(location)).copy_merge_params(params))


def start_upload(client: httpx.Client, repo: str) -> httpx.Response:
    resp = client.post(f"/v2/{repo}/blobs/uploads/")
    assert resp.status_code == 202, (resp.status_code, resp.text)
    assert resp.headers.get("Location"), resp.headers
    return resp


def push_blob(client: httpx.Client, repo: str, blob: Blob | bytes, algorithm: str | None = None) -> str:
    """POST then PUT ?digest= (monolithic); returns the digest."""
    if isinstance(blob, bytes):
        blob = Blob(blob, algorithm=algorithm or "sha256")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.put(q(loc, digest=blob.digest), content=blob.data,
                      headers={"Content-Type": OCTET})
    assert resp.status_code == 201, (resp.status_code, resp.text)
    assert resp.headers["Docker-Content-Digest"] == blob.digest
    return blob.digest


def post_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    """The one-request upload (POST ?digest= with the body); returns the digest."""
    d = digest_of(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data)
    assert r.status_code == 201, r.text
    return d


def put_blob(client: httpx.Client, repo: str, blob: Blob) -> httpx.Response:
    """POST + monolithic PUT, checking nothing: the PUT's response (or the POST's if it failed)."""
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    if r.status_code != 202:
        return r
    return client.put(q(r.headers["Location"], digest=blob.digest), content=blob.data,
                      headers={"Content-Type": OCTET})


def upload_location(client: httpx.Client, repo: str) -> str:
    """A new upload session's Location, made relative."""
    return relative(start_upload(client, repo).headers["Location"])


def put_manifest(client: httpx.Client, repo: str, reference: str, manifest: Manifest,
                 content_type: str | None = None) -> httpx.Response:
    return client.put(f"/v2/{repo}/manifests/{reference}", content=manifest.body,
                      headers={"Content-Type": content_type or manifest.media_type})


def push_manifest(client: httpx.Client, repo: str, manifest: Manifest, reference: str | None = None,
                  *, with_blobs: bool = True) -> httpx.Response:
    """Push the manifest's blobs (and child manifests, recursively), then the manifest itself."""
    if with_blobs:
        for b in manifest.blobs:
            push_blob(client, repo, b)
        for child in manifest.children:
            push_manifest(client, repo, child)
    resp = put_manifest(client, repo, reference or manifest.digest, manifest)
    assert resp.status_code == 201, (resp.status_code, resp.text)
    assert resp.headers["Docker-Content-Digest"] == manifest.digest
    return resp


def push_image(client: httpx.Client, repo: str, tag: str | None = None, **kw: Any) -> Manifest:
    m = make_manifest(**kw)
    push_manifest(client, repo, m, tag)
    return m


def assert_pulls(client: httpx.Client, repo: str, ref: str, m: Manifest) -> None:
    """`ref` resolves to exactly `m`, and every blob it names comes back byte for byte."""
    r = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": m.media_type})
    assert r.status_code == 200, (repo, ref, r.status_code, r.text)
    assert r.content == m.body, (repo, ref)
    for b in m.blobs:
        r = client.get(f"/v2/{repo}/blobs/{b.digest}")
        assert r.status_code == 200, (repo, b.digest, r.status_code, r.text)
        assert r.content == b.data, (repo, b.digest)


# -- images from raw bytes (the hostile-input tests) ------------------------------------------
@dataclass
class Image:
    """A pushed image: its tag, config and layer bytes, and the manifest that names them."""

    repo: str
    tag: str
    config: bytes
    layers: list[bytes]
    manifest: bytes = b""
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    def as_manifest(self) -> Manifest:
        return Manifest(self.manifest, OCI_MANIFEST, [Blob(b) for b in (self.config, *self.layers)])


def image_manifest(config: bytes, layers: list[bytes], **extra: Any) -> bytes:
    """An OCI image manifest over uncompressed-tar layers (compact JSON)."""
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
           "layers": [{"mediaType": OCI_LAYER_TAR, "digest": digest_of(b), "size": len(b)} for b in layers],
           **extra}
    return json.dumps(doc, separators=(",", ":")).encode()


def push_raw_image(client: httpx.Client, repo: str, tag: str, config: bytes, layers: list[bytes]) -> Image:
    """Blobs by one-request uploads, then the manifest under `tag`."""
    img = Image(repo, tag, config, layers)
    for b in (config, *layers):
        img.blobs[post_blob(client, repo, b)] = b
    img.manifest = image_manifest(config, layers)
    r = client.put(f"/v2/{repo}/manifests/{tag}", content=img.manifest, headers={"content-type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return img


def assert_image_pulls(client: httpx.Client, img: Image) -> None:
    """The image is served byte-exact, by tag and by digest, with every blob."""
    for ref in (img.tag, img.digest):
        assert_pulls(client, img.repo, ref, img.as_manifest())


def error_codes(resp: httpx.Response) -> list[str]:
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), body
    return [e["code"] for e in body["errors"]]


def assert_error(resp: httpx.Response, status: int | tuple[int, ...], *codes: str) -> None:
    """Status is (one of) `status`, and the body is the spec's envelope whose first code is in `codes`."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, (resp.status_code, resp.text)
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"errors"}, body
    errors = body["errors"]
    assert isinstance(errors, list) and errors, body
    for e in errors:
        assert {"code", "message"} <= set(e), e
        assert isinstance(e["code"], str) and e["code"] in ERROR_CODES, e
        assert isinstance(e["message"], str), e
    if codes:
        assert errors[0]["code"] in codes, (errors, codes)
