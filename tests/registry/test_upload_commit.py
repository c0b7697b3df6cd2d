"""What an upload's commit leaves on disk: Distribution's layout and nothing else.

On the filesystem the session's directory is renamed into place as the blob's directory
(``directory_renames``), so these check that only ``data`` travels with it, that a blob
committed meanwhile by another session wins cleanly, and that the other drivers' path (move
the data file) gives the same tree. Run over fsync on and off: the commit order differs.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fastreg.digest import digest_bytes
from fastreg.errors import RegistryError
from fastreg.registry import Registry
from fastreg.storage.driver.backends.filesystem import FilesystemDriver


class NoDirRenames(FilesystemDriver):
    directory_renames = False


async def body(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def blob_files(d: Any) -> set[str]:
    return {f"docker/registry/v2/blobs/sha256/{d.hex[:2]}/{d.hex}/data",
            f"docker/registry/v2/repositories/r/_layers/sha256/{d.hex}/link"}


@pytest.fixture(params=["rename-dir", "move-file"])
def reg(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    cls = FilesystemDriver if request.param == "rename-dir" else NoDirRenames
    return Registry(cls(str(tmp_path), fsync=request.param == "rename-dir"), secret=b"s")


def test_monolithic_commit_leaves_only_the_blob_and_its_link(reg: Registry, tmp_path: Path) -> None:
    data = os.urandom(5000)
    d = digest_bytes(data)

    async def go() -> None:
        st = await reg.uploads.start("r")
        assert await reg.uploads.commit(st, d, body(data[:100], data[100:])) == len(data)

    asyncio.run(go())
    assert tree(tmp_path) == blob_files(d)
    assert (tmp_path / f"docker/registry/v2/blobs/sha256/{d.hex[:2]}/{d.hex}/data").read_bytes() == data
    assert not list((tmp_path / "docker/registry/v2/repositories/r/_uploads").iterdir())


def test_chunked_commit_drops_the_hash_states(reg: Registry, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    d = digest_bytes(data)

    async def go() -> None:
        uploads = reg.uploads
        st = await uploads.start("r")
        st = await uploads.append(st, body(data[:100_000]))
        uploads._hashers.clear()            # as if the next request went to another worker
        st = await uploads.append(st, body(data[100_000:200_000]))
        assert any("hashstates" in f for f in tree(tmp_path))
        await uploads.commit(st, d, body(data[200_000:]))

    asyncio.run(go())
    assert tree(tmp_path) == blob_files(d)


def test_blob_committed_meanwhile_by_another_session(reg: Registry, tmp_path: Path) -> None:
    data = os.urandom(7000)
    d = digest_bytes(data)

    async def go() -> None:
        a = await reg.uploads.start("r")
        b = await reg.uploads.start("r")
        a = await reg.uploads.append(a, body(data))
        await reg.uploads.commit(b, d, body(data))
        await reg.uploads.commit(a, d, None)

    asyncio.run(go())
    assert tree(tmp_path) == blob_files(d)


def test_blob_directory_appearing_between_check_and_rename(tmp_path: Path, monkeypatch: Any) -> None:
    """The race the rename can lose: the blob's directory was filled after our check."""
    reg = Registry(FilesystemDriver(str(tmp_path)), secret=b"s")
    data = os.urandom(3000)
    d = digest_bytes(data)
    real = reg.blobs.stat_data
    calls = 0

    async def late(digest: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:                      # the check before the commit: not there yet...
            dst = tmp_path / f"docker/registry/v2/blobs/sha256/{d.hex[:2]}/{d.hex}"
            dst.mkdir(parents=True)         # ...then another session's data lands
            (dst / "data").write_bytes(data)
            return None
        return await real(digest)

    monkeypatch.setattr(reg.blobs, "stat_data", late)

    async def go() -> None:
        st = await reg.uploads.start("r")
        await reg.uploads.commit(st, d, body(data))

    asyncio.run(go())
    assert calls == 2
    assert tree(tmp_path) == blob_files(d)


def test_wrong_digest_leaves_nothing(reg: Registry, tmp_path: Path) -> None:
    data = os.urandom(3000)

    async def go() -> None:
        st = await reg.uploads.start("r")
        with pytest.raises(RegistryError) as err:
            await reg.uploads.commit(st, digest_bytes(b"other"), body(data))
        assert err.value.code.value == "DIGEST_INVALID"

    asyncio.run(go())
    assert tree(tmp_path) == set()


def test_blob_directory_holding_something_else(tmp_path: Path) -> None:
    """A blob directory left with a stray file (and no data): the data is moved in beside it."""
    reg = Registry(FilesystemDriver(str(tmp_path)), secret=b"s")
    data = os.urandom(3000)
    d = digest_bytes(data)
    dst = tmp_path / f"docker/registry/v2/blobs/sha256/{d.hex[:2]}/{d.hex}"
    dst.mkdir(parents=True)
    (dst / "stray").write_bytes(b"x")

    async def go() -> None:
        st = await reg.uploads.start("r")
        await reg.uploads.commit(st, d, body(data))

    asyncio.run(go())
    assert (dst / "data").read_bytes() == data
    assert tree(tmp_path) == blob_files(d) | {str((dst / "stray").relative_to(tmp_path))}
