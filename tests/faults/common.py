"""Helpers of the fault and crash tests: real `fastreg serve` processes on a (faulty) storage, byte
-exact pulls, `fastreg check` as a subprocess, and a look at what is on disk."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import FastregServer, _pythonpath, make_fastreg
from tests.e2e.helpers import OCTET, Blob, Manifest, q, relative

V2 = "docker/registry/v2"


def faulty_storage(root: Path | None, rules: list[dict[str, Any]], *, driver: str = "filesystem",
                   stale: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `storage:` override for make_fastreg: the faulty wrapper around `driver`."""
    section: dict[str, Any] = {"driver": driver, "rules": rules, "seed": 1}
    if driver == "filesystem":
        assert root is not None
        section["parameters"] = {"rootdirectory": str(root)}
    if stale:
        section["stale"] = stale
    return {"storage": {"filesystem": None, "faulty": section}}


def server(tmp: Path, storage: dict[str, Any] | None = None, start: bool = True) -> FastregServer:
    """A fastreg on tmp/data (the same directory every time for the same `tmp`)."""
    srv = make_fastreg(tmp, storage)
    if start:
        srv.start()
    return srv


def put_blob(c: httpx.Client, repo: str, blob: Blob) -> httpx.Response:
    """POST + monolithic PUT; the PUT's response (whatever it is)."""
    r = c.post(f"/v2/{repo}/blobs/uploads/")
    if r.status_code != 202:
        return r
    return c.put(q(r.headers["Location"], digest=blob.digest), content=blob.data,
                 headers={"Content-Type": OCTET})


def put_manifest(c: httpx.Client, repo: str, ref: str, m: Manifest) -> httpx.Response:
    return c.put(f"/v2/{repo}/manifests/{ref}", content=m.body, headers={"Content-Type": m.media_type})


def push(c: httpx.Client, repo: str, m: Manifest, ref: str) -> None:
    for b in m.blobs:
        r = put_blob(c, repo, b)
        assert r.status_code == 201, (r.status_code, r.text)
    r = put_manifest(c, repo, ref, m)
    assert r.status_code == 201, (r.status_code, r.text)


def assert_pulls(c: httpx.Client, repo: str, ref: str, m: Manifest) -> None:
    """`ref` resolves to exactly `m`, and every blob it names comes back byte for byte."""
    r = c.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": m.media_type})
    assert r.status_code == 200, (repo, ref, r.status_code, r.text)
    assert r.content == m.body, (repo, ref)
    for b in m.blobs:
        r = c.get(f"/v2/{repo}/blobs/{b.digest}")
        assert r.status_code == 200, (repo, b.digest, r.status_code, r.text)
        assert r.content == b.data, (repo, b.digest)


def assert_5xx_json(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A server error in the OCI envelope (never a traceback, never an empty body)."""
    assert r.status_code in (statuses or (500, 503, 507)), (r.status_code, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"errors"} and body["errors"], body
    err = body["errors"][0]
    assert err["code"] in ("UNKNOWN", "UNAVAILABLE") and err["message"], err
    assert "Traceback" not in r.text and "File \"" not in r.text
    return err  # type: ignore[no-any-return]


def run_check(root: Path, tmp: Path, *args: str, storage: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """`fastreg check --json` on a plain filesystem config for `root` (plus `storage` keys, e.g.
    ``maintenance``): (exit status, report)."""
    cfg = tmp / "check.yml"
    cfg.write_text(yaml.safe_dump({"version": "0.1", "log": {"level": "error"},
                                   "storage": {"filesystem": {"rootdirectory": str(root)}, **(storage or {})}}))
    p = subprocess.run([sys.executable, "-m", "fastreg", "check", "--config", str(cfg), "--json", *args],
                       check=False, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": _pythonpath()})
    assert p.returncode in (0, 1, 4), (p.returncode, p.stdout, p.stderr)
    return p.returncode, json.loads(p.stdout)


def stored_files(root: Path) -> dict[str, bytes]:
    """Every file under the data directory (relative path → bytes), temporary files included."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def upload_location(c: httpx.Client, repo: str) -> str:
    r = c.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, (r.status_code, r.text)
    return relative(r.headers["Location"])
