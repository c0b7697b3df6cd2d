"""Writing a file through the filesystem driver's streaming writer, as an upload does."""
from __future__ import annotations

from collections.abc import Sequence

from fastreg.storage.driver.filesystem import FilesystemDriver


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
