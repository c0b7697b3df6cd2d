"""The registries under test, started on 127.0.0.1 with equivalent configs, and process accounting.

fastreg, CNCF Distribution 3.1.1 (`registry:3`, the reference: a static binary found through
$BENCH_DISTRIBUTION3, then ../shared/tools/distribution-3.1.1/registry beside the checkout,
then /work/shared/tools/distribution-3.1.1/registry) and Debian's `docker-registry` (Distribution
2.8.2 built with Go 1.19). All get the same Distribution-style config (filesystem storage, deletes
enabled, warn-level logs,
no access log, Debian's default in-memory blob descriptor cache); fastreg ignores the keys it does
not use. CPU time is summed over each server's whole process tree (granian runs one process per
worker) from /proc/<pid>/stat utime+stime.

Variants of fastreg, measured beside it in the same run (``--servers fastreg,fastreg+pulls``):

* ``fastreg+NAME`` — fastreg with the config of ``VARIANTS[NAME]`` merged into the shared one
  (``fastreg+pulls``: ``fastreg.history.pulls: true``); several join: ``fastreg+a+b``.
* ``fastreg@REF`` — fastreg as of the git commit REF (a tag, branch or hash of this checkout),
  exported with ``git archive`` into the run's temporary directory, its compiled extensions built
  there (``python3 setup.py build_ext --inplace``, with FASTREG_REQUIRE_EXTENSIONS=1), started with
  PYTHONPATH at that tree and checked to import fastreg and both engines from it; the tree is
  removed with the run.  Without Cython no build is possible: REF's ``.pyx`` files must then be
  byte-identical to this checkout's, whose built extensions are copied (said on stderr), else the
  run stops.  ``fastreg@REF+pulls`` combines both.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION_BIN = "/usr/bin/docker-registry"         # Debian's package: Distribution 2.8.2, Go 1.19
DISTRIBUTION3_ENV = "BENCH_DISTRIBUTION3"
DISTRIBUTION3_PLACES = (REPO_ROOT.parent / "shared/tools/distribution-3.1.1/registry",
                        Path("/work/shared/tools/distribution-3.1.1/registry"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_config(root: Path, port: int) -> dict[str, Any]:
    """One config both servers run unchanged (only the port and the data directory differ)."""
    return {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "fastreg-bench-secret-0123456789abcdef"},
    }


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the given processes (children that were reaped are not counted)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def reset_peak_rss(pids: list[int]) -> None:
    """Reset VmHWM (peak RSS) of each process (Linux >= 4.0, `echo 5 > clear_refs`)."""
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def peak_rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Server(ABC):
    """A registry process (and its workers) on 127.0.0.1 with a private data directory."""

    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    commit: str = ""                    # the git commit it runs, when not this checkout's (fastreg@REF)
    note: str = ""                      # anything the results must say about it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root(self) -> Path:
        return self.workdir / "data"

    @abstractmethod
    def command(self, config: Path) -> list[str]:
        ...

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def config(self) -> dict[str, Any]:
        return registry_config(self.root, self.port)

    def prepare(self) -> None:  # noqa: B027 -- a hook: most servers need nothing
        """Anything to do once before the first start (fastreg@REF builds its tree)."""

    def release(self) -> None:  # noqa: B027 -- a hook: most servers need nothing
        """Undo `prepare` (called once, after the last stop)."""

    def start(self, timeout: float = 30.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "config.yml"
        cfg.write_text(yaml.safe_dump(self.config()))
        with open(self.workdir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(self.command(cfg), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, env=self.environment(), start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1):
                    pass
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.log()}")
        # granian forks its workers before binding; wait until the tree is stable.
        time.sleep(0.5)

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    def workers(self) -> list[int]:
        """Processes that serve requests: the leaves of the tree (the process itself if alone)."""
        kids = _children()
        tree = self.pids()
        leaves = [p for p in tree if not kids.get(p)]
        return leaves or tree

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        p = self.workdir / "server.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` merged in, mappings recursively."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


# fastreg+NAME: the config NAME adds to fastreg's (and what it measures, for --help and the docs)
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "pulls": ({"fastreg": {"history": {"pulls": True}}}, "pull history recorded (fastreg.history.pulls: true)"),
    "nofsync": ({"fastreg": {"fsync": False}}, "no fsync (fastreg.fsync: false): the bound on what fewer "
                "fsyncs can give"),
    "groupsync": ({"storage": {"filesystem": {"groupsync": True}}}, "one syncfs shared by every waiting durable "
                  "write instead of each one's fsyncs (storage.filesystem.groupsync: true): the same durability"),
}


class Fastreg(Server):
    tree: Path = REPO_ROOT                      # where fastreg is imported from
    overrides: dict[str, Any] | None = None     # a variant's config

    def command(self, config: Path) -> list[str]:
        return [sys.executable, "-m", "fastreg", "serve", "--config", str(config)]

    def config(self) -> dict[str, Any]:
        return merged(super().config(), self.overrides or {})

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        rest = env.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{self.tree}{os.pathsep}{rest}" if rest else str(self.tree)
        return env


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_ref(ref: str) -> str | None:
    """The commit `ref` names in this checkout, or None."""
    got = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                         capture_output=True, text=True, check=False)
    return got.stdout.strip() if got.returncode == 0 else None


def checkout_commit() -> str:
    """This checkout's commit, with `+changes` when tracked files differ from it ("" outside git)."""
    head = resolve_ref("HEAD")
    if head is None:
        return ""
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return head + ("+changes" if dirty else "")


class FastregAt(Fastreg):
    """fastreg as of git commit `ref`, from a tree exported into the run's directory."""

    # how its compiled extensions are had: "auto" (built with Cython; without it, this checkout's
    # where REF's .pyx files are identical), "build" (built, or the run stops), "checkout" (this
    # checkout's built ones whatever REF's .pyx say: --ref-engines checkout)
    engines = "auto"

    def __init__(self, name: str, workdir: Path, ref: str) -> None:
        super().__init__(name, workdir)
        self.ref = ref
        self.tree = workdir.parent / f"src-{workdir.name}"

    def prepare(self) -> None:
        git = ["git", "-C", str(REPO_ROOT)]
        commit = resolve_ref(self.ref)
        if commit is None:
            raise RuntimeError(f"{self.name}: {self.ref!r} is not a commit of {REPO_ROOT}")
        self.commit = commit
        self.tree.mkdir(parents=True)
        _say(f"{self.name}: exporting {self.commit[:12]} into {self.tree} (git archive)")
        archive = subprocess.Popen([*git, "archive", "--format=tar", self.commit], stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "-C", str(self.tree)], stdin=archive.stdout, check=False)
        assert archive.stdout is not None
        archive.stdout.close()
        if archive.wait() != 0 or untar.returncode != 0:
            raise RuntimeError(f"{self.name}: exporting {self.commit} failed")
        self._build()
        self._check_imports()

    def _differing_pyx(self) -> list[str]:
        """REF's .pyx files that are not byte-identical to this checkout's (or that it lacks built)."""
        out = []
        for p in sorted((self.tree / "fastreg").glob("*.pyx")):
            mine = REPO_ROOT / "fastreg" / p.name
            if not (mine.exists() and mine.read_bytes() == p.read_bytes()):
                out.append(p.name)
        return out

    def _reuse_checkout_engines(self, why: str) -> None:
        for p in sorted((self.tree / "fastreg").glob("*.pyx")):
            built = sorted((REPO_ROOT / "fastreg").glob(f"{p.stem}.*.so"))
            if not built:
                raise RuntimeError(f"{self.name}: this checkout has no built {p.stem} to reuse "
                                   "(python3 setup.py build_ext --inplace here first)")
            for so in built:
                shutil.copy2(so, self.tree / "fastreg" / so.name)
        self.note = f"{self.name} runs this checkout's built extensions ({why})"
        _say(f"{self.name}: {self.note[len(self.name) + 1:]}")

    def _build(self) -> None:
        differ = self._differing_pyx()
        if self.engines == "checkout":
            self._reuse_checkout_engines("--ref-engines checkout; its .pyx files that differ from this "
                                         f"checkout's: {', '.join(differ) or 'none'}")
            return
        if importlib.util.find_spec("Cython") is None:
            if self.engines == "auto" and not differ:
                self._reuse_checkout_engines("Cython is not installed, and its .pyx files are identical")
                return
            raise RuntimeError(f"{self.name}: Cython is not installed, so its compiled extensions cannot be built"
                               + (f", and its {', '.join(differ)} differ from this checkout's" if differ else "")
                               + ": install Cython, or run with --ref-engines checkout to run this checkout's "
                               "built extensions with it (git diff " + self.commit[:12] + " -- fastreg/*.pyx "
                               "shows what that changes)")
        pyx = sorted((self.tree / "fastreg").glob("*.pyx"))
        _say(f"{self.name}: building its compiled extensions in {self.tree} (python3 setup.py build_ext --inplace)")
        env = {**os.environ, "FASTREG_REQUIRE_EXTENSIONS": "1"}
        env.pop("FASTREG_NO_EXTENSIONS", None)
        proc = subprocess.Popen([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=self.tree, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-20:]
            if line.startswith(("Compiling ", "building ", "copying ", "running ", "error", "ERROR")):
                _say(f"  {self.name} build: {line.rstrip()[:160]}")
        missing = [p.name for p in pyx if not list((self.tree / "fastreg").glob(f"{p.stem}.*.so"))]
        if proc.wait() != 0 or missing:
            raise RuntimeError(f"{self.name}: building its compiled extensions failed (exit {proc.returncode}"
                               f"{', not built: ' + ', '.join(missing) if missing else ''}); the build's last "
                               f"lines:\n" + "\n".join(tail))

    def _check_imports(self) -> None:
        """The server must run this tree's fastreg and engines, never the checkout's (an editable
        install finds modules the tree lacks in the checkout)."""
        mods = ["fastreg", *(f"fastreg.{p.stem}" for p in sorted((self.tree / "fastreg").glob("*.pyx")))]
        code = f"import importlib\nfor m in {mods!r}: print(importlib.import_module(m).__file__)"
        got = subprocess.run([sys.executable, "-c", code], env=self.environment(), cwd=self.tree.parent,
                             capture_output=True, text=True, check=False)
        paths = got.stdout.split()
        if got.returncode != 0 or len(paths) != len(mods) or not all(Path(p).is_relative_to(self.tree) for p in paths):
            raise RuntimeError(f"{self.name}: fastreg and its engines do not import from {self.tree}: "
                               f"{paths or got.stderr.strip()[-500:]}")

    def release(self) -> None:
        shutil.rmtree(self.tree, ignore_errors=True)


class Distribution(Server):
    """Debian's docker-registry (Distribution 2.8.2)."""

    binary = DISTRIBUTION_BIN

    def command(self, config: Path) -> list[str]:
        return [self.binary, "serve", str(config)]


class Distribution3(Distribution):
    """Distribution 3.1.1. Same config format (version 0.1) and the same /v2/ answer as 2.8; its
    OpenTelemetry tracing is on by default and exports to https://localhost:4318, failing (and
    logging an error) every few seconds when nothing listens there: switched off here, as fastreg
    does no tracing. /debug/health exists only on its debug listener, so readiness is /v2/."""

    def __init__(self, name: str, workdir: Path, binary: str) -> None:
        super().__init__(name, workdir)
        self.binary = binary

    def environment(self) -> dict[str, str]:
        return {**os.environ, "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "none")}


def distribution_available() -> bool:
    return os.access(DISTRIBUTION_BIN, os.X_OK)


def distribution3_binary() -> str | None:
    """The Distribution 3.1.1 binary: $BENCH_DISTRIBUTION3, else the shared tools
    directory beside the checkout, else /work/shared/tools; None when absent."""
    env = os.environ.get(DISTRIBUTION3_ENV)
    if env:
        return env if os.access(env, os.X_OK) else None
    for p in DISTRIBUTION3_PLACES:
        if os.access(p, os.X_OK):
            return str(p)
    return None


def version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, check=False,
                              timeout=10).stdout.strip()
    except OSError:
        return ""


# Server names in results: fastreg, the reference (3.1.1) and Debian's 2.8.2.
FASTREG, DIST3, DIST2 = "fastreg", "distribution-3.1.1", "distribution-2.8.2"
LABELS = {FASTREG: "fastreg", DIST3: "Distribution 3.1.1", DIST2: "Distribution 2.8.2 (Debian)"}


def is_fastreg(name: str) -> bool:
    """fastreg or a variant of it (fastreg+pulls, fastreg@REF, ...)."""
    return name == FASTREG or name.startswith((FASTREG + "+", FASTREG + "@"))


def parse_variant(name: str) -> tuple[str | None, list[str]]:
    """``fastreg[@REF][+V…]`` → (REF or None, [V…]); ValueError naming what is wrong."""
    if not is_fastreg(name):
        raise ValueError(f"not a fastreg variant: {name!r}")
    head, *plus = name[len(FASTREG):].split("+")
    ref = head[1:] if head.startswith("@") else None
    if head and ref is None or ref == "":
        raise ValueError(f"{name!r}: fastreg@REF needs a git ref")
    unknown = [v for v in plus if v not in VARIANTS]
    if unknown:
        raise ValueError(f"{name!r}: unknown variant {', '.join(unknown)} (known: "
                         + ", ".join(f"+{k} ({v[1]})" for k, v in VARIANTS.items()) + ")")
    return ref, plus


def make_server(name: str, work: Path) -> Server:
    if is_fastreg(name):
        ref, plus = parse_variant(name)
        workdir = work / name.replace("/", "_")
        srv = Fastreg(name, workdir) if ref is None else FastregAt(name, workdir, ref)
        for v in plus:
            srv.overrides = merged(srv.overrides or {}, VARIANTS[v][0])
        return srv
    if name == DIST3:
        binary = distribution3_binary()
        if binary is None:
            raise RuntimeError(f"Distribution 3.1.1 not found (set ${DISTRIBUTION3_ENV})")
        return Distribution3(name, work / name, binary)
    if name == DIST2:
        return Distribution(name, work / name)
    raise ValueError(f"unknown server {name!r}")
