"""fastreg._fsio (durable small-file writes in one GIL-free sequence) and its pure twin
fastreg._fsio_py: the same files, the same errors, the same cleanup; and, watched with strace, the
compiled one makes the system calls the durability contract needs (tests/faults/
test_fs_durability.py checks which directories the driver asks to sync)."""
from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fastreg import _fsio_py
from fastreg.storage.driver.backends import filesystem as fs_mod

_compiled: ModuleType | None
try:
    from fastreg import _fsio as _compiled  # type: ignore[attr-defined, unused-ignore]
except ImportError:
    if os.environ.get("FASTREG_NO_EXTENSIONS") != "1":
        raise ImportError("fastreg._fsio is not built: run `python setup.py build_ext --inplace`") from None
    _compiled = None

ENGINES = [pytest.param(m, id="pure" if m is _fsio_py else "compiled")
           for m in ([_fsio_py] if _compiled is None else [_compiled, _fsio_py])]


@pytest.fixture(params=ENGINES)
def fsio(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


def b(p: Path) -> bytes:
    return os.fsencode(p)


def test_the_driver_uses_the_compiled_engine() -> None:
    if os.environ.get("FASTREG_NO_EXTENSIONS") == "1":
        assert fs_mod.fsio is _fsio_py and not fs_mod.FSIO_COMPILED
    else:
        assert fs_mod.fsio is _compiled and fs_mod.FSIO_COMPILED


@pytest.mark.parametrize("durable", [True, False])
@pytest.mark.parametrize("data", [b"", b"sha256:" + b"a" * 64, bytearray(os.urandom(300_000)),
                                  memoryview(b"0123456789")[2:7]])
def test_put_file_writes_and_replaces(fsio: ModuleType, tmp_path: Path, durable: bool, data: bytes) -> None:
    target = tmp_path / "link"
    target.write_bytes(b"old")
    fsio.put_file(b(tmp_path / ".tmp1"), b(target), data, durable, b(tmp_path) if durable else None)
    assert target.read_bytes() == bytes(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"]
    assert (target.stat().st_mode & 0o777) == 0o644 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_put_file_errors(fsio: ModuleType, tmp_path: Path) -> None:
    missing = tmp_path / "nodir"
    with pytest.raises(FileNotFoundError) as ei:            # the directory is missing
        fsio.put_file(b(missing / ".tmp"), b(missing / "link"), b"x", True, b(missing))
    assert ei.value.filename == b(missing / ".tmp") and ei.value.errno == errno.ENOENT
    (tmp_path / ".tmp").write_bytes(b"someone else's")     # O_EXCL: never another's file
    with pytest.raises(FileExistsError):
        fsio.put_file(b(tmp_path / ".tmp"), b(tmp_path / "link"), b"x", True, None)
    assert (tmp_path / ".tmp").read_bytes() == b"someone else's" and not (tmp_path / "link").exists()
    full = tmp_path / "full"                                 # the rename fails: the temporary goes
    full.mkdir()
    (full / "occupied").write_bytes(b"")
    with pytest.raises(OSError) as ei:
        fsio.put_file(b(tmp_path / ".tmp2"), b(full), b"x", True, b(tmp_path))
    assert ei.value.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
    assert not (tmp_path / ".tmp2").exists() and (full / "occupied").exists()
    gone = tmp_path / "gone"                                 # the directory fsync fails: the file stays
    with pytest.raises(FileNotFoundError) as ei:
        fsio.put_file(b(tmp_path / ".tmp3"), b(tmp_path / "kept"), b"y", True, b(gone))
    assert ei.value.filename == b(gone) and (tmp_path / "kept").read_bytes() == b"y"


WRITE_FAILS = r"""
import os, resource, signal, sys
from fastreg import {mod} as fsio
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))     # writes past 4 KiB fail (EFBIG)
d = sys.argv[1].encode()
try:
    fsio.put_file(d + b"/.tmp", d + b"/link", b"x" * 100_000, True, d)
except OSError as exc:
    print(exc.errno, exc.filename.decode(), sorted(os.listdir(d)))
"""


def test_a_failed_write_leaves_nothing(fsio: ModuleType, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", WRITE_FAILS.format(mod=fsio.__name__.split(".")[1]),
                          str(tmp_path)], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.split(" ", 2) == [str(errno.EFBIG), str(tmp_path / ".tmp"), "[]\n"]


def test_rename_sync_and_sync_dirs(fsio: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "up/data").write_bytes(b"blob")
    (tmp_path / "blobs").mkdir()
    fsio.rename_sync(b(tmp_path / "up"), b(tmp_path / "blobs/ab"), b(tmp_path / "blobs"))
    assert (tmp_path / "blobs/ab/data").read_bytes() == b"blob" and not (tmp_path / "up").exists()
    with pytest.raises(FileNotFoundError) as ei:
        fsio.rename_sync(b(tmp_path / "up"), b(tmp_path / "blobs/cd"), None)
    assert ei.value.filename == b(tmp_path / "up")
    fsio.sync_dirs([b(tmp_path), b(tmp_path / "blobs")])
    with pytest.raises(FileNotFoundError) as ei:
        fsio.sync_dirs([b(tmp_path), b(tmp_path / "nope"), b(tmp_path / "blobs")])
    assert ei.value.filename == b(tmp_path / "nope")
    with pytest.raises(NotADirectoryError):
        fsio.sync_dirs([b(tmp_path / "blobs/ab/data")])


TRACED = r"""
import sys
from fastreg import _fsio as fsio
d = sys.argv[1].encode()
fsio.put_file(d + b"/.tmpA", d + b"/durable", b"sha256:x", True, d)
fsio.put_file(d + b"/.tmpB", d + b"/cache", b"state", False, None)
fsio.rename_sync(d + b"/durable", d + b"/moved", d)
fsio.sync_dirs([d])
"""


@pytest.mark.skipif(_compiled is None, reason="FASTREG_NO_EXTENSIONS=1: no compiled engine to trace")
def test_the_compiled_engine_makes_the_durable_calls(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    assert strace, "strace is needed (Debian package strace; .ci/run installs it)"
    log = tmp_path / "trace"
    d = tmp_path / "d"
    d.mkdir()
    subprocess.run([strace, "-f", "-qq", "-y", "-o", str(log), "-e", "trace=openat,write,fsync,rename,close",
                    sys.executable, "-c", TRACED, str(d)], check=True, timeout=120)
    calls = [ln for ln in log.read_text().splitlines() if str(d) in ln]
    fsyncs = [re.search(r"fsync\(\d+<([^>]*)>", ln) for ln in calls if "fsync(" in ln]
    synced = [m.group(1) for m in fsyncs if m]
    # durable put: the temporary file, then its directory; the cache write: no fsync;
    # rename_sync and sync_dirs: the directory each
    assert synced == [str(d / ".tmpA"), str(d), str(d), str(d)], calls
    renames = [ln for ln in calls if ln.split("(")[0].endswith("rename")]
    assert len(renames) == 3, calls
    assert any(f'"{d / ".tmpB"}", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC' in ln for ln in calls), calls
