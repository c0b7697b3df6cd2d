"""The `fastreg` command line: --version, help examples, completion, one-line failures, and what
`check` and `gc` say about the storage they scan.  Every test runs the real command."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fastreg import __version__
from tests.support.server import TEST_SECRET, FastregServer, checkout_pythonpath
from tests.test_startup import LOG_LINE, one_line

COMMANDS = ["serve", "version", "htpasswd", "gencerts", "gc", "check", "completion"]


def fastreg(*args: str, env: dict[str, str] | None = None, stdin_text: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m fastreg ARGS` in a session of its own: no controlling terminal, as in a script."""
    io: dict[str, Any] = {"input": stdin_text} if stdin_text is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run([sys.executable, "-m", "fastreg", *args], capture_output=True, text=True, **io,
                          env={**os.environ, "PYTHONPATH": checkout_pythonpath(), **(env or {})},
                          timeout=timeout, start_new_session=True, check=False)


def fs_config(tmp: Path, root: Path, **extra: Any) -> Path:
    cfg = tmp / "cli.yml"
    cfg.write_text(yaml.safe_dump({"version": "0.1", "log": {"level": "warn"},
                                   "storage": {"filesystem": {"rootdirectory": str(root)}, **extra}}))
    return cfg


# -- version, help, completion ---------------------------------------------------------------

@pytest.mark.parametrize(("env", "engine"), [({}, "compiled"), ({"FASTREG_NO_EXTENSIONS": "1"}, "pure")])
def test_version(env: dict[str, str], engine: str) -> None:
    for args in (["--version"], ["version"]):
        p = fastreg(*args, env=env)
        assert p.returncode == 0, p.stderr
        assert p.stdout == f"fastreg {__version__} (engine: {engine})\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(command: str) -> None:
    p = fastreg(command, "--help")
    assert p.returncode == 0, p.stderr
    examples = p.stdout.split("example", 1)
    assert len(examples) == 2, p.stdout
    assert f"fastreg {command}" in examples[1] or (command == "completion" and "fastreg completion" in examples[1])


def test_bash_completion() -> None:
    script = fastreg("completion", "bash")
    assert script.returncode == 0
    probe = r'''
source /dev/stdin
complete -p fastreg
_try() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _fastreg; echo "${COMPREPLY[*]}"; }
_try fastreg ch
_try fastreg --debug htpasswd a
_try fastreg check --re
_try fastreg completion ''
'''
    p = subprocess.run(["bash", "-c", probe], input=script.stdout, capture_output=True, text=True, timeout=30,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["complete -o filenames -F _fastreg fastreg", "check", "add", "--repair",
                                     "bash zsh"]


def test_zsh_completion(tmp_path: Path) -> None:
    script = tmp_path / "_fastreg"
    script.write_text(fastreg("completion", "zsh").stdout)
    check = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    load = f"autoload -U compinit && compinit -u -d {tmp_path}/zcompdump && source {script}"
    p = subprocess.run(["zsh", "-f", "-c", f"{load} && print -r -- $_comps[fastreg]"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "_fastreg"


def test_zsh_completes_in_an_interactive_shell(tmp_path: Path) -> None:
    """An interactive zsh (on a pseudo-terminal, zsh/zpty) completes `fastreg gen<TAB>` to
    gencerts and `fastreg check --rep<TAB>` to --repair (each read blocks until the completed
    word appears on the terminal; a completion that never comes ends in the timeout)."""
    script = tmp_path / "_fastreg"
    script.write_text(fastreg("completion", "zsh").stdout)
    driver = rf"""
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z 'PS1="> "; autoload -U compinit; compinit -u -d {tmp_path}/zcd; source {script}; fastreg() {{ :; }}'
zpty -w -n z $'fastreg gen\t'
zpty -r z out '*gencerts*' && print completed: gencerts
zpty -w -n z $'\C-u'
zpty -w -n z $'fastreg check --rep\t'
zpty -r z out '*--repair*' && print completed: --repair
zpty -d z
"""
    p = subprocess.run(["zsh", "-f", "-c", driver], capture_output=True, text=True, timeout=60, check=False,
                       cwd=tmp_path)            # no file there that a file-name completion could offer
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["completed: gencerts", "completed: --repair"], p.stdout


# -- one-line failures ------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["serve", "check", "gc"])
def test_a_missing_config_file(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "config.yml"
    line = one_line(fastreg(command, "--config", str(missing)))
    assert line == (f"fastreg: configuration file {missing} does not exist: check the path "
                    "(or run without a file for the defaults)")


def test_a_config_file_that_is_a_directory(tmp_path: Path) -> None:
    line = one_line(fastreg("serve", str(tmp_path)))
    assert line == f"fastreg: configuration file {tmp_path} is a directory: name the config.yml inside it"


def test_htpasswd_add_without_a_terminal(tmp_path: Path) -> None:
    """No terminal to ask on (a script, a container without -t): say to use --password-stdin."""
    ht = tmp_path / "htpasswd"
    line = one_line(fastreg("htpasswd", "add", "alice", "--file", str(ht)))
    assert line == "fastreg: no terminal to ask for the password: pipe it in with --password-stdin"
    assert not ht.exists()
    ok = fastreg("htpasswd", "add", "alice", "--file", str(ht), "--password-stdin", "--cost", "4",
                 stdin_text="s3cret\n")
    assert ok.returncode == 0, ok.stderr
    assert ht.read_text().startswith("alice:$2")


def test_ignored_keys_get_one_short_line_each(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump({
        "version": "0.1", "log": {"level": "info", "hooks": [{"type": "mail", "disabled": True}]},
        "reporting": {"bugsnag": {"apikey": "x"}},
        "compatibility": {"schema1": {"enabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")},
                    "cache": {"blobdescriptor": "inmemory"}}}))
    p = fastreg("check", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    warnings = [line for line in p.stderr.splitlines() if " WARNING fastreg.config: " in line]
    assert len(warnings) == 4, p.stderr
    for line in warnings:
        assert LOG_LINE.match(line)
        assert len(line.split(" WARNING fastreg.config: ", 1)[1]) <= 160, line


# -- check and gc ----------------------------------------------------------------------------

def _push(srv: FastregServer, repo: str, tag: str) -> str:
    """A one-layer image (config blob + manifest) pushed with plain HTTP; the manifest digest."""
    import hashlib
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        digests = []
        for body in (b'{"architecture":"amd64","os":"linux"}', os.urandom(64)):
            d = "sha256:" + hashlib.sha256(body).hexdigest()
            r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=body)
            assert r.status_code == 201, r.text
            digests.append((d, len(body)))
        (cd, cs), (ld, ls) = digests
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cd, "size": cs},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                           "digest": ld, "size": ls}]}).encode()
        r = c.put(f"/v2/{repo}/manifests/{tag}", content=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201, r.text
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_check_names_its_storage_and_problems_by_repository_and_tag(fastreg_factory: Any, tmp_path: Path) -> None:
    srv: FastregServer = fastreg_factory()
    digest = _push(srv, "team/app", "v1")
    _push(srv, "team/app", "v2")
    srv.stop()
    # the manifest's blob goes missing: its revision and its tag v1 name nothing
    blob = srv.root / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    blob.unlink()
    cfg = fs_config(tmp_path, srv.root)
    p = fastreg("check", "--config", str(cfg))
    assert p.returncode == 4, p.stderr
    lines = p.stdout.splitlines()
    assert "dangling-revision: team/app:v1: names a missing blob (" in "\n".join(lines)
    assert any(line.startswith(f"dangling-tag: team/app:v1: v1 names {digest}, not a healthy manifest (")
               for line in lines), lines
    assert not any("team/app:v2" in line for line in lines)
    assert lines[-1].startswith(f"filesystem storage at {srv.root}: checked ")
    report = json.loads(fastreg("check", "--json", "--config", str(cfg)).stdout)
    assert report["storage"] == f"filesystem storage at {srv.root}"
    assert {(p["kind"], tuple(p["tags"])) for p in report["problems"]} >= {("dangling-tag", ("v1",))}


def test_gc_names_its_storage(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    p = fastreg("gc", "--dry-run", "--quiet", "--config", str(fs_config(tmp_path, root)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1].startswith(f"filesystem storage at {root}: 0 repositories, ")


def _with_damage(srv: FastregServer) -> Path:
    """An incomplete tag (no current/link): damage --repair removes."""
    tag = srv.root / "docker/registry/v2/repositories/team/app/_manifests/tags/broken"
    tag.mkdir(parents=True)
    return tag


def test_check_repair_refuses_while_a_registry_serves(fastreg_factory: Any, tmp_path: Path) -> None:
    srv: FastregServer = fastreg_factory()
    _push(srv, "team/app", "v1")
    tag = _with_damage(srv)
    cfg = fs_config(tmp_path, srv.root)
    line = one_line(fastreg("check", "--repair", "--config", str(cfg)))
    assert line == (f"fastreg check: a registry is serving {srv.root}: stop it (or restart it read-only, "
                    "storage.maintenance.readonly.enabled: true) before --repair, or add --force")
    assert tag.is_dir()                                      # nothing repaired
    assert fastreg("check", "--config", str(cfg)).returncode == 4       # a plain check runs
    forced = fastreg("check", "--repair", "--force", "--config", str(cfg))
    assert forced.returncode == 1, forced.stderr
    assert "repairing anyway (--force)" in forced.stderr
    assert not tag.exists()
    srv.stop()
    tag = _with_damage(srv)
    p = fastreg("check", "--repair", "--config", str(cfg))
    assert p.returncode == 1, p.stderr
    assert not tag.exists()


def test_check_repair_runs_beside_a_read_only_registry(fastreg_factory: Any, tmp_path: Path) -> None:
    srv: FastregServer = fastreg_factory({"storage": {"maintenance": {"readonly": {"enabled": True}}}})
    tag = _with_damage(srv)
    p = fastreg("check", "--repair", "--config", str(fs_config(tmp_path, srv.root)))
    assert p.returncode == 1, p.stderr
    assert not tag.exists()


def test_a_registry_does_not_start_while_check_repairs(tmp_path: Path) -> None:
    """The repair holds the data directory: `fastreg serve` on it meanwhile says so in one line."""
    import fcntl

    from tests.support.server import free_port, serve_refused
    from tests.test_startup import write_config
    root = tmp_path / "data"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)              # what `check --repair` holds while it runs
        line = one_line(serve_refused(write_config(tmp_path, free_port())))
    finally:
        os.close(fd)
    assert line == (f"fastreg: storage.filesystem.rootdirectory: {root} is being repaired (fastreg check "
                    "--repair): start the registry when it is done")


def test_check_repair_on_an_object_store_says_it_cannot_tell(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(yaml.safe_dump({"version": "0.1", "log": {"level": "error"}, "storage": {"inmemory": {}},
                                   "http": {"secret": TEST_SECRET}}))
    p = fastreg("check", "--repair", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    assert p.stderr == ("fastreg check: cannot tell whether a registry serves inmemory storage: repair only while "
                        "none writes there (stopped, or serving read-only)\n")
    assert re.match(r"^inmemory storage: checked 0 blobs", p.stdout.splitlines()[-1])


@pytest.mark.parametrize("command", ["check", "gc"])
def test_check_and_gc_without_the_storage_extra(tmp_path: Path, command: str) -> None:
    shadow = tmp_path / "shadow" / "aiobotocore"          # fastreg[s3] not installed: aiobotocore fails to import
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'aiobotocore'\")\n")
    cfg = tmp_path / "s3.yml"
    cfg.write_text(yaml.safe_dump({"version": "0.1", "log": {"level": "warn"}, "storage": {"s3": {
        "bucket": "b", "region": "us-east-1", "regionendpoint": "http://127.0.0.1:9"}}}))
    shadowed = f"{checkout_pythonpath()}{os.pathsep}{tmp_path / 'shadow'}"
    p = fastreg(command, "--config", str(cfg), env={"PYTHONPATH": shadowed})
    line = one_line(p)
    assert line.startswith(f"fastreg {command}: s3 storage (bucket b, region us-east-1, regionendpoint "
                           "http://127.0.0.1:9): storage driver s3 needs aiobotocore: pip install 'fastreg[s3]'"), line
    assert line.count("pip install") == 1
