"""Helpers for the hostile-input tests: a data-directory snapshot, raw HTTP/1.1 over a socket
(so nothing normalises `..`, percent-encoding or a lying Content-Length on the way), and pushes.

Everything talks to a real `fastreg serve` (tests/conftest.py); nothing is mocked.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- what is stored ------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, str]:
    """Every directory and file under `root`: relative path -> "dir" or the file's SHA-256.

    Two equal snapshots mean nothing stored was added, removed or changed (mtimes aside).  The
    server may be removing a cancelled session while we walk: a file gone between listing and
    reading is recorded as "vanished", which differs from any stable state."""
    out: dict[str, str] = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            try:
                with open(p, "rb") as fh:
                    out[os.path.join(rel, f)] = hashlib.sha256(fh.read()).hexdigest()
            except FileNotFoundError:       # removed by the server while we walk: a change,
                out[os.path.join(rel, f)] = "vanished"     # re-checked by wait_unchanged
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changes = [f"+ {k}" for k in sorted(after.keys() - before.keys())]
    changes += [f"- {k}" for k in sorted(before.keys() - after.keys())]
    changes += [f"~ {k}" for k in sorted(before.keys() & after.keys()) if before[k] != after[k]]
    return changes


def wait_unchanged(root: Path, before: dict[str, str], settle: float = 5.0) -> None:
    """Assert the tree equals `before`.  The server may still be finishing the request it just
    answered (e.g. removing a cancelled session after the client went away), so a difference is
    re-checked until `settle` seconds have passed before it counts."""
    deadline = time.monotonic() + settle
    while True:
        changes = diff(before, snapshot(root))
        if not changes or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not changes, "stored data changed:\n" + "\n".join(changes[:40])


# -- raw HTTP/1.1 ----------------------------------------------------------------------------------

@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool = False                   # the server closed the connection

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The first OCI error code of the envelope, if any."""
        try:
            return str(self.json()["errors"][0]["code"])
        except (ValueError, KeyError, IndexError, TypeError):
            return None


def read_response(sock: socket.socket, timeout: float = 20.0) -> RawResponse:
    """One response from `sock` (Content-Length framed, or until close)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    closed = False
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            rest += chunk
    else:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            rest += chunk
    return RawResponse(status, headers, rest, closed)


def request_bytes(method: str, target: str, host: str, headers: dict[str, str] | None = None,
                  body: bytes = b"", content_length: int | None = None) -> bytes:
    h = {"Host": host, "Connection": "close", **(headers or {})}
    if body or content_length is not None or method in ("PUT", "PATCH", "POST"):
        h.setdefault("Content-Length", str(len(body) if content_length is None else content_length))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode("latin-1") + body


def raw(port: int, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
        content_length: int | None = None) -> RawResponse:
    """Send exactly this request (target as given: no normalisation, no re-encoding)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request_bytes(method, target, f"127.0.0.1:{port}", headers, body, content_length))
        return read_response(s)


# -- pushing ---------------------------------------------------------------------------------------

@dataclass
class Image:
    repo: str
    tag: str
    config: bytes
    layers: list[bytes]
    manifest: bytes = b""
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def image_manifest(config: bytes, layers: list[bytes], **extra: Any) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
           "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(b), "size": len(b)} for b in layers],
           **extra}
    return json.dumps(doc, separators=(",", ":")).encode()


def push_blob(c: httpx.Client, repo: str, data: bytes) -> str:
    d = digest_of(data)
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data)
    assert r.status_code == 201, r.text
    return d


def push_image(c: httpx.Client, repo: str, tag: str, config: bytes, layers: list[bytes]) -> Image:
    img = Image(repo, tag, config, layers)
    for b in (config, *layers):
        img.blobs[push_blob(c, repo, b)] = b
    img.manifest = image_manifest(config, layers)
    r = c.put(f"/v2/{repo}/manifests/{tag}", content=img.manifest, headers={"content-type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return img


def assert_pulls(c: httpx.Client, img: Image) -> None:
    """The image is served byte-exact, by tag and by digest, with every blob."""
    for ref in (img.tag, img.digest):
        r = c.get(f"/v2/{img.repo}/manifests/{ref}", headers={"accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == img.manifest, (ref, r.status_code)
    for d, data in img.blobs.items():
        r = c.get(f"/v2/{img.repo}/blobs/{d}")
        assert r.status_code == 200 and r.content == data, d


def assert_blobs_intact(root: Path) -> None:
    """Every stored blob hashes to the digest it is stored under (the one invariant that must
    never break: a registry serving other bytes than the digest it names)."""
    base = root / "docker/registry/v2/blobs/sha256"
    bad = []
    if base.exists():
        for data in base.glob("*/*/data"):
            if hashlib.sha256(data.read_bytes()).hexdigest() != data.parent.name:
                bad.append(data.parent.name)
    assert not bad, f"blobs whose content does not match their digest: {bad}"


def serve_refused(config: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `fastreg serve --config CONFIG`, expected to refuse to start: its exit and output.  A
    server that starts instead is stopped (its whole process group) and the test fails."""
    from tests.conftest import _pythonpath
    proc = subprocess.Popen([sys.executable, "-m", "fastreg", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": _pythonpath()})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"fastreg serve --config {config} did not refuse to start") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
