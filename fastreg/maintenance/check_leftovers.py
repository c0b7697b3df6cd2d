"""What interrupted writes leave in the storage, for `fastreg check` (``check.py``) to judge.

* **Temporary files** ``.fastreg-tmp-*``: the filesystem driver's ``put_content`` writes one
  beside its target and renames it over the target; a crash between the two leaves it.  The
  driver hides them from its listings, so they are found by walking the local directory (only
  the filesystem driver writes them; on other drivers this part is not applicable).
* **Upload sessions** ``_uploads/<uuid>/``: ``data`` and ``startedat`` (RFC 3339) are written
  when the session starts.  A session missing either cannot be resumed or finished, and upload
  purging (``storage.maintenance.uploadpurging``) cannot age it without ``startedat``: it would
  stay for ever.  A session whose ``startedat`` is older than the purge age is one purging
  removes; check only reports it.

Both are judged by *how long ago they were last written* (the newest ``mtime``): a write in
flight (a put holds its temporary file for milliseconds; a session has a fresh ``startedat``
written just before its ``data``) is younger than any grace period, so only leftovers older
than the grace period are ever called a problem or removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver
from .purge import parse_startedat

GRACE = 3600.0          # default: leftovers last written less than an hour ago are left alone


@dataclass
class TemporaryFiles:
    """The ``temporary_files`` section of the report: every ``.fastreg-tmp-*`` file found."""
    checked: bool = False       # False: not a local filesystem, nothing of the kind to look for
    count: int = 0
    bytes: int = 0
    young: int = 0              # of these, last written within the grace period (left alone)
    paths: list[str] = field(default_factory=list)


@dataclass
class UploadSessions:
    """The ``uploads`` section of the report."""
    sessions: int = 0
    bytes: int = 0                                      # in their ``data`` files
    purge_age: float = 168 * 3600.0                     # storage.maintenance.uploadpurging.age
    purging: bool = True                                # ... .enabled
    aged: list[str] = field(default_factory=list)       # started before the purge age: purging removes them
    broken: list[str] = field(default_factory=list)     # no data, or no readable startedat (young ones too)


@dataclass(frozen=True)
class TempFile:
    path: str           # driver path
    size: int
    mtime: float


@dataclass(frozen=True)
class Session:
    repository: str
    path: str                   # driver path of ``.../_uploads/<uuid>``
    size: int | None            # of ``data``; None: there is no data file
    startedat: str | None       # its text; None: there is no startedat file
    started: float | None       # parsed; None: missing or not a time
    last_write: float           # newest mtime of the session directory and anything in it

    @property
    def broken(self) -> str:
        """Why the session can never be finished or aged ("" if it can)."""
        why = []
        if self.size is None:
            why.append("no data file")
        if self.startedat is None:
            why.append("no startedat")
        elif self.started is None:
            why.append(f"startedat {self.startedat.strip()[:60]!r} is not an RFC 3339 time")
        return ", ".join(why)


async def temporary_files(driver: StorageDriver) -> list[TempFile] | None:
    """Every temporary file under the registry root, sorted; None if the driver keeps no local
    files (it then writes no temporary files either)."""
    found = await walk.temporary_files(driver)
    return None if found is None else [TempFile(path, size, mtime) for path, size, mtime in found]


async def upload_sessions(driver: StorageDriver) -> list[Session]:
    """Every upload session of every repository (those that vanish while being read — finished
    or cancelled meanwhile — are left out)."""
    out: list[Session] = []
    for up in await walk.uploads(driver):
        try:
            size: int | None = (await driver.stat(layout.upload_data(up.name, up.uuid))).size
        except PathNotFound:
            size = None
        try:
            text: str | None = (await driver.get_content(layout.upload_startedat(up.name, up.uuid))) \
                .decode("utf-8", "replace")
        except PathNotFound:
            text = None
        # a session holds data, startedat and hashstates/<alg>/<offset>: three levels
        last = await walk.newest_mtime(driver, up.path, 3)
        if size is None and text is None and not await walk.exists(driver, up.path):
            continue
        out.append(Session(up.name, up.path, size, text, parse_startedat(text) if text is not None else None, last))
    return out
