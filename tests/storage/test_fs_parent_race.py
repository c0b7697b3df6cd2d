"""Two requests creating the same missing parent directory at once (32 new blobs whose digests
share a ``blobs/sha256/<xx>`` prefix, committed together into a fresh storage): the one whose
rename or write failed for want of the directory, and that then finds the directory made by the
other, must retry, not report its own (present) source as missing."""
from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fastreg.storage.driver.backends import filesystem as fs


def _racing_fsio(monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, int]:
    """fs.fsio whose first `name` call finds the target's directory missing, while another request
    creates that directory before the driver looks again (the race, at its exact point)."""
    real = fs.fsio
    calls = {"n": 0}

    def racing(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            src, dst = (args[0], args[1])
            parent = os.path.dirname(os.fsdecode(dst))
            assert not os.path.isdir(parent)
            os.makedirs(parent)                 # the other request wins the mkdir ...
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), src)     # ... after we failed
        return getattr(real, name)(*args)
    funcs = {k: getattr(real, k) for k in dir(real) if not k.startswith("_")}
    funcs[name] = racing
    monkeypatch.setattr(fs, "fsio", SimpleNamespace(**funcs))
    return calls


@pytest.mark.parametrize("fsync", [True, False])
def test_a_move_retries_when_another_request_made_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               fsync: bool) -> None:
    d = fs.FilesystemDriver(str(tmp_path), fsync=fsync)

    async def go() -> None:
        await d.put_content("/repositories/r/_uploads/u1/data", b"verified bytes")
        calls = _racing_fsio(monkeypatch, "rename_sync")
        await d.move("/repositories/r/_uploads/u1", "/blobs/sha256/ab/ab12")
        assert calls["n"] == 2
        assert (tmp_path / "blobs/sha256/ab/ab12/data").read_bytes() == b"verified bytes"
        assert not (tmp_path / "repositories/r/_uploads/u1").exists()
        await d.close()
    asyncio.run(go())


@pytest.mark.parametrize("durable", [True, False])
def test_a_write_retries_when_another_request_made_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                durable: bool) -> None:
    d = fs.FilesystemDriver(str(tmp_path))

    async def go() -> None:
        calls = _racing_fsio(monkeypatch, "put_file")
        await d.put_content("/repositories/r/_layers/sha256/ab12/link", b"sha256:ab12", durable=durable)
        assert calls["n"] == 2
        assert (tmp_path / "repositories/r/_layers/sha256/ab12/link").read_bytes() == b"sha256:ab12"
        await d.close()
    asyncio.run(go())


def test_a_move_of_a_missing_source_is_still_path_not_found(tmp_path: Path) -> None:
    d = fs.FilesystemDriver(str(tmp_path))

    async def go() -> None:
        with pytest.raises(fs.PathNotFound):
            await d.move("/repositories/r/_uploads/gone", "/blobs/sha256/cd/cd34")
        assert not (tmp_path / "blobs/sha256/cd/cd34").exists()
        await d.close()
    asyncio.run(go())


def test_many_moves_into_one_new_directory_at_once(tmp_path: Path) -> None:
    """The same race among real threads: 32 sessions renamed into one missing prefix directory."""
    d = fs.FilesystemDriver(str(tmp_path), fsync=False)
    for i in range(32):
        (tmp_path / f"up/u{i}").mkdir(parents=True)
        (tmp_path / f"up/u{i}/data").write_bytes(b"%d" % i)
    for round_ in range(20):
        errors: list[BaseException] = []
        start = threading.Barrier(32)

        def one(i: int, r: int = round_, start: threading.Barrier = start,
                errors: list[BaseException] = errors) -> None:
            start.wait()
            try:
                d._move(str(tmp_path / f"up/u{i}"), str(tmp_path / f"b{r}/sha256/ab/ab{i}"))
            except BaseException as exc:    # noqa: BLE001 (collected, asserted below)
                errors.append(exc)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        for i in range(32):     # back for the next round
            os.rename(tmp_path / f"b{round_}/sha256/ab/ab{i}", tmp_path / f"up/u{i}")
    asyncio.run(d.close())
