"""The pure-Python twin of fastreg._fsio (FASTREG_NO_EXTENSIONS=1, or the extension not built):
the same sequences with ``os``, which gives the GIL back around every call."""
from __future__ import annotations

import contextlib
import os

from typing_extensions import Buffer


def put_file(tmp: bytes, target: bytes, data: Buffer, durable: bool, sync_dir: bytes | None) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:   # write, fsync, close: name the file
            exc.filename = tmp
        raise
    if sync_dir is not None:
        sync_dirs([sync_dir])


def rename_sync(src: bytes, dst: bytes, sync_dir: bytes | None) -> None:
    os.rename(src, dst)
    if sync_dir is not None:
        sync_dirs([sync_dir])


def sync_dirs(dirs: list[bytes]) -> None:
    for d in dirs:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
