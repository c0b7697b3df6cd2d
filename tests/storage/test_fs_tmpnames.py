"""Temporary names of the filesystem driver: unique per process, also across a fork (granian
forks its workers after importing the app), and never a file somebody else created."""
from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

import pytest

from fastreg.storage.driver.backends import filesystem as fs
from fastreg.storage.driver.base import StorageError


def test_names_differ_within_a_process_and_after_fork(tmp_path: Path) -> None:
    mine = {fs._tmp_name(str(tmp_path)) for _ in range(1000)}
    assert len(mine) == 1000 and all(os.path.basename(n).startswith(fs.TMP_PREFIX) for n in mine)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:        # the child reports the names it would use
        try:
            os.close(r)
            os.write(w, "\n".join(fs._tmp_name(str(tmp_path)) for _ in range(1000)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = set(f.read().split("\n"))
    os.waitpid(pid, 0)
    assert len(child) == 1000 and not child & mine
    assert not child & {fs._tmp_name(str(tmp_path)) for _ in range(1000)}


def test_an_existing_file_is_never_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's next temporary name already exists (another host sharing the storage drew
    the same id): the write fails, and the other's file is left as it was."""
    monkeypatch.setattr(fs, "_tmp_seq", itertools.count(7))
    taken = Path(fs._tmp_name(str(tmp_path / "d")))
    monkeypatch.setattr(fs, "_tmp_seq", itertools.count(7))
    taken.parent.mkdir()
    taken.write_bytes(b"someone else's")
    d = fs.FilesystemDriver(str(tmp_path))
    with pytest.raises(StorageError, match="File exists"):
        asyncio.run(d.put_content("/d/link", b"mine"))
    asyncio.run(d.close())
    assert taken.read_bytes() == b"someone else's" and not (tmp_path / "d/link").exists()
