"""Registry operations over `client.Conn`: blob uploads (monolithic and chunked), mounts, manifests.

Every operation checks the status and the digest the server answers with, so a fast wrong answer
fails the run instead of winning it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from .client import Body, Conn, HTTPError, expect

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: Body) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Blob:
    data: Body
    digest: str

    @classmethod
    def of(cls, data: Body) -> Blob:
        return cls(data, sha256(data))

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, media_type: str) -> dict[str, object]:
        return {"mediaType": media_type, "digest": self.digest, "size": self.size}


def _with_query(location: str, key: str, value: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}{key}={value}"


def _check_digest(resp_digest: str | None, want: str, what: str) -> None:
    if resp_digest != want:
        raise HTTPError(f"{what}: server answered digest {resp_digest}, expected {want}")


async def start_upload(c: Conn, repo: str) -> str:
    r = expect(await c.request("POST", f"/v2/{repo}/blobs/uploads/"), 202, what=f"POST upload {repo}")
    loc = r.header("location")
    if not loc:
        raise HTTPError("upload session without Location")
    return loc


async def upload(c: Conn, repo: str, blob: Blob) -> None:
    """POST a session, PUT the whole body with ?digest= (what docker and skopeo do)."""
    loc = await start_upload(c, repo)
    r = expect(await c.request("PUT", _with_query(loc, "digest", blob.digest), body=blob.data,
                               headers={"Content-Type": "application/octet-stream"}),
               201, what=f"PUT blob {repo}")
    _check_digest(r.header("docker-content-digest"), blob.digest, "PUT blob")


async def upload_chunked(c: Conn, repo: str, blob: Blob, chunk: int) -> None:
    """POST, PATCH each chunk with Content-Range, then PUT ?digest= with no body."""
    loc = await start_upload(c, repo)
    mv = memoryview(blob.data)
    for start in range(0, len(mv), chunk):
        part = mv[start:start + chunk]
        r = expect(await c.request("PATCH", loc, body=part, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(part) - 1}"}), 202, what="PATCH chunk")
        loc = r.header("location") or loc
        if r.header("range") != f"0-{start + len(part) - 1}":
            raise HTTPError(f"PATCH: Range {r.header('range')} after {start + len(part)} bytes")
    r = expect(await c.request("PUT", _with_query(loc, "digest", blob.digest)), 201, what="PUT chunked")
    _check_digest(r.header("docker-content-digest"), blob.digest, "PUT chunked")


async def blob_exists(c: Conn, repo: str, digest: str) -> bool:
    r = expect(await c.request("HEAD", f"/v2/{repo}/blobs/{digest}"), 200, 404, what="HEAD blob")
    return r.status == 200


async def mount(c: Conn, repo: str, digest: str, source: str) -> None:
    r = expect(await c.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}"),
               201, what=f"mount {digest} from {source}")
    _check_digest(r.header("docker-content-digest"), digest, "mount")


def image_manifest(config: Blob, layers: list[Blob]) -> Blob:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(OCI_CONFIG),
           "layers": [b.descriptor(OCI_LAYER) for b in layers]}
    return Blob.of(orjson.dumps(doc))


def config_blob(label: str) -> Blob:
    return Blob.of(orjson.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"bench": label}},
                                 "rootfs": {"type": "layers", "diff_ids": []}}))


async def put_manifest(c: Conn, repo: str, ref: str, manifest: Blob) -> None:
    r = expect(await c.request("PUT", f"/v2/{repo}/manifests/{ref}", body=manifest.data,
                               headers={"Content-Type": OCI_MANIFEST}), 201, what=f"PUT manifest {repo}:{ref}")
    _check_digest(r.header("docker-content-digest"), manifest.digest, "PUT manifest")


async def get_manifest(c: Conn, repo: str, ref: str, want: Blob) -> None:
    r = expect(await c.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}),
               200, what="GET manifest")
    _check_digest(r.header("docker-content-digest"), want.digest, "GET manifest header")
    _check_digest(sha256(r.body), want.digest, "GET manifest body")
