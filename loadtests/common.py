"""Registry calls for the locustfiles, on locust's FastHttpSession (geventhttpclient), every answer checked.

Statuses are checked with `catch_response`, pulled bytes against their digest, so a fast wrong
answer counts as a failure in locust's statistics.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

# Every user stops after this many iterations (and locust's -t bounds the time).
MAX_ITERATIONS = int(os.environ.get("LOADTEST_MAX_ITERATIONS", "200"))


class CheckFailed(Exception):
    pass


@dataclass(frozen=True)
class Blob:
    data: bytes
    digest: str

    @classmethod
    def of(cls, data: bytes) -> Blob:
        return cls(data, "sha256:" + hashlib.sha256(data).hexdigest())

    def descriptor(self, media_type: str, **extra: Any) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": self.digest, "size": len(self.data), **extra}


def manifest(config: Blob, layers: list[Blob]) -> Blob:
    return Blob.of(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": config.descriptor(OCI_CONFIG),
                               "layers": [b.descriptor(OCI_LAYER) for b in layers]}).encode())


def index(platforms: list[tuple[str, Blob]]) -> Blob:
    return Blob.of(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        m.descriptor(OCI_MANIFEST, platform={"os": "linux", "architecture": arch}) for arch, m in platforms]}).encode())


def config(label: str) -> Blob:
    return Blob.of(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"x": label}},
                               "rootfs": {"type": "layers", "diff_ids": []}}).encode())


def _checked(client: Any, method: str, url: str, name: str, statuses: tuple[int, ...],
             digest: str | None = None, **kw: Any) -> Any:
    """One request, marked failed in locust's stats unless the status (and the body digest) match."""
    with client.request(method, url, name=name, catch_response=True, **kw) as resp:
        if resp.status_code not in statuses:
            resp.failure(f"status {resp.status_code}: {resp.text[:200]}")
            raise CheckFailed(f"{name}: {resp.status_code}")
        if digest is not None and method == "GET":
            got = "sha256:" + hashlib.sha256(resp.content).hexdigest()
            if got != digest:
                resp.failure(f"body digest {got} != {digest}")
                raise CheckFailed(f"{name}: wrong bytes")
        if digest is not None and resp.headers.get("Docker-Content-Digest") not in (None, digest):
            resp.failure(f"Docker-Content-Digest {resp.headers.get('Docker-Content-Digest')} != {digest}")
            raise CheckFailed(f"{name}: wrong digest header")
        resp.success()
        return resp


def blob_exists(client: Any, repo: str, digest: str) -> bool:
    return _checked(client, "HEAD", f"/v2/{repo}/blobs/{digest}", "HEAD blob", (200, 404)).status_code == 200


def upload(client: Any, repo: str, blob: Blob) -> None:
    """POST a session, PUT the body with ?digest= (what docker does for a layer)."""
    r = _checked(client, "POST", f"/v2/{repo}/blobs/uploads/", "POST upload", (202,))
    loc = r.headers["Location"]
    _checked(client, "PUT", f"{loc}{'&' if '?' in loc else '?'}digest={blob.digest}", "PUT blob", (201,),
             digest=blob.digest, data=blob.data, headers={"Content-Type": "application/octet-stream"})


def mount(client: Any, repo: str, digest: str, source: str) -> bool:
    r = _checked(client, "POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", "POST mount",
                 (201, 202))
    if r.status_code == 202:     # not mountable: cancel the session the server opened instead
        _checked(client, "DELETE", r.headers["Location"], "DELETE upload", (204,))
        return False
    return True


def push_blob(client: Any, repo: str, blob: Blob, source: str | None = None) -> None:
    """HEAD first; mount from `source` if given, else upload."""
    if blob_exists(client, repo, blob.digest):
        return
    if source and mount(client, repo, blob.digest, source):
        return
    upload(client, repo, blob)


def put_manifest(client: Any, repo: str, ref: str, m: Blob, media_type: str = OCI_MANIFEST) -> None:
    _checked(client, "PUT", f"/v2/{repo}/manifests/{ref}", f"PUT manifest ({'tag' if ':' not in ref else 'digest'})",
             (201,), digest=m.digest, data=m.data, headers={"Content-Type": media_type})


def get(client: Any, url: str, name: str, digest: str, accept: str | None = None) -> bytes:
    headers = {"Accept": accept} if accept else {}
    return _checked(client, "GET", url, name, (200,), digest=digest, headers=headers).content


class SetupClient:
    """A plain requests.Session shaped like locust's client, for untimed setup before the storm."""

    def __init__(self, host: str) -> None:
        import requests
        self.host = host.rstrip("/")
        self.s = requests.Session()

    def request(self, method: str, url: str, name: str = "", catch_response: bool = False, **kw: Any) -> Any:
        r = self.s.request(method, url if url.startswith("http") else self.host + url, timeout=60, **kw)
        r.failure = lambda msg: None     # the interface locust's catch_response gives
        r.success = lambda: None
        return r      # requests.Response is a context manager itself

    def close(self) -> None:
        self.s.close()
