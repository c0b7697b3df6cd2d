"""fastreg.http.headertimeout / bodytimeout: parsed as durations, validated, defaults as documented."""
from __future__ import annotations

from pathlib import Path

import pytest

from fastreg.config import ConfigError, load_config


def _load(tmp_path: Path, text: str) -> object:
    p = tmp_path / "c.yml"
    p.write_text(f"storage: {{inmemory: {{}}}}\n{text}")
    return load_config(p, env={})


def test_defaults(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "")
    assert (cfg.fastreg.http.headertimeout, cfg.fastreg.http.bodytimeout) == (30.0, 60.0)  # type: ignore[attr-defined]


def test_durations_and_env(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "fastreg: {http: {headertimeout: 1500ms, bodytimeout: 0}}\n")
    assert (cfg.fastreg.http.headertimeout, cfg.fastreg.http.bodytimeout) == (1.5, 0.0)  # type: ignore[attr-defined]
    p = tmp_path / "e.yml"
    p.write_text("storage: {inmemory: {}}\n")
    assert load_config(p, env={"FASTREG_FASTREG_HTTP_BODYTIMEOUT": "2m"}).fastreg.http.bodytimeout == 120.0


@pytest.mark.parametrize("text", ["fastreg: {http: {headertimeout: 0}}", "fastreg: {http: {bodytimeout: -1s}}",
                                  "fastreg: {http: {readtimeout: 1s}}"])
def test_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        _load(tmp_path, text + "\n")
