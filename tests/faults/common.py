"""Helpers of the fault and crash tests: real `fastreg serve` processes on a (faulty) storage,
`fastreg check` as a subprocess, and a look at what is on disk.  Pushes and byte-exact pulls are
tests/support/registry_client.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.server import FastregServer, checkout_pythonpath, make_fastreg

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


def run_check(root: Path, tmp: Path, *args: str, storage: dict[str, Any] | None = None,
              config: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """`fastreg check --json` on a plain filesystem config for `root` (plus `storage` keys, e.g.
    ``maintenance``, and other top-level `config` sections, e.g. ``proxy``): (exit status, report)."""
    cfg = tmp / "check.yml"
    cfg.write_text(yaml.safe_dump({"version": "0.1", "log": {"level": "error"},
                                   "storage": {"filesystem": {"rootdirectory": str(root)}, **(storage or {})},
                                   **(config or {})}))
    p = subprocess.run([sys.executable, "-m", "fastreg", "check", "--config", str(cfg), "--json", *args],
                       check=False, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": checkout_pythonpath()})
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
