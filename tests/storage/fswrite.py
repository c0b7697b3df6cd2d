"""Writing a file through the filesystem driver's streaming writer, as an upload does."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from fastreg.storage.driver.backends.filesystem import FilesystemDriver


async def write_file(d: FilesystemDriver, path: str, chunks: Sequence[bytes], *, append: bool = False,
                     commit: bool = True) -> None:
    """`chunks` into `path`, one write each; committed (fsync), or only closed (a PATCH's end)."""
    w = await d.writer(path, append=append)
    for c in chunks:
        await w.write(c)
    if commit:
        await w.commit()
    else:
        await w.close()


def write_two_files(d: FilesystemDriver, chunks: Sequence[bytes], caplog: pytest.LogCaptureFixture) -> list[str]:
    """`chunks` into /a/data, then /b/data (a fallback decided during the first must hold for
    the second), the driver closed; the warnings the driver logged meanwhile."""
    async def go() -> None:
        await write_file(d, "/a/data", chunks)
        await write_file(d, "/b/data", chunks)
        await d.close()
    with caplog.at_level(logging.WARNING, logger="fastreg.storage.filesystem"):
        asyncio.run(go())
    return [r.message for r in caplog.records]
