"""A worker's startup moves what it loaded out of the cyclic collector's reach and collects the
young generation less often (fastreg.app.quiet_gc); run in a child process, which it changes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import asyncio, gc, json, sys
from fastreg.app import App, GC_GEN0
from fastreg.config import load_config

async def main() -> dict:
    app = App(load_config(sys.argv[1], env={}))
    before = {"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive() -> dict:
        if len(inbox) == 1:              # startup answered: look before shutting down
            sent.append({"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()})
        return inbox.pop(0)

    async def send(msg: dict) -> None:
        sent.append(msg["type"])
    await app({"type": "lifespan"}, receive, send)
    return {"before": before, "after": sent[1], "messages": [sent[0], sent[2]], "gen0": GC_GEN0}

print(json.dumps(asyncio.run(main())))
"""


def test_startup_freezes_and_relaxes_the_collector(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                   "http:\n  secret: s3cr3t-s3cr3t-s3cr3t\n")
    out = subprocess.run([sys.executable, "-c", PROBE, str(cfg)], capture_output=True, text=True,
                         check=True, timeout=60)
    got = json.loads(out.stdout)
    assert got["messages"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert got["before"]["threshold"] == 700 and got["before"]["frozen"] == 0
    assert got["after"]["threshold"] == got["gen0"] > 700
    assert got["after"]["frozen"] > 10_000          # modules, config, the app: all frozen
