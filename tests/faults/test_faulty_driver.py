"""The fault-injecting wrapper itself, around the real filesystem and in-memory drivers: rules
fire on the op, path, call number and probability they name, raise the typed error the real
driver would, and stale reads serve the previous version for as long as configured."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fastreg.config import ConfigError, load_config
from fastreg.storage.driver.backends.filesystem import FilesystemDriver
from fastreg.storage.driver.backends.inmemory import InMemoryDriver
from fastreg.storage.driver.base import PathNotFound, StorageDriver, StorageError, StorageFull
from fastreg.storage.driver.factory import create_driver
from fastreg.storage.driver.wrappers.faulty import FaultyDriver, Rule, Stale


@pytest.fixture(params=["filesystem", "inmemory"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., FaultyDriver]:
    def build(rules: list[dict[str, Any]] | None = None, stale: dict[str, Any] | None = None,
              seed: int | None = None) -> FaultyDriver:
        inner: StorageDriver = (FilesystemDriver(str(tmp_path / "root")) if request.param == "filesystem"
                                else InMemoryDriver())
        return FaultyDriver(inner, [Rule.from_config(r, i) for i, r in enumerate(rules or [])],
                            stale=Stale.from_config(stale) if stale else None, seed=seed)
    return build


@pytest.fixture
def run() -> Iterator[Callable[[Any], Any]]:
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


def test_rule_fires_on_its_op_path_and_call_number(make: Callable[..., FaultyDriver], run: Any) -> None:
    d = make([{"op": "put_content", "path": "/a/*", "action": "enospc", "nth": 2, "times": 2}])
    run(d.put_content("/a/1", b"one"))                      # 1st matching call: passes
    run(d.put_content("/b/1", b"other path"))               # never matches
    run(d.get_content("/a/1"))                              # other op
    for n in (2, 3):
        with pytest.raises(StorageFull):
            run(d.put_content(f"/a/{n}", b"x"))
        with pytest.raises(PathNotFound):                   # `before`: nothing was written
            run(d.get_content(f"/a/{n}"))
    run(d.put_content("/a/4", b"four"))                     # `times` used up
    assert run(d.get_content("/a/4")) == b"four"
    run(d.close())


def test_after_fault_makes_the_change_and_still_fails(make: Callable[..., FaultyDriver], run: Any) -> None:
    d = make([{"op": "move", "path": "/dst/*", "action": "eio", "when": "after"}])
    run(d.put_content("/src/x", b"data"))
    with pytest.raises(StorageError, match="Input/output error") as info:
        run(d.move("/src/x", "/dst/x"))
    assert not isinstance(info.value, (StorageFull, PathNotFound))
    assert run(d.get_content("/dst/x")) == b"data"
    run(d.close())


def test_timeout_and_slow_wait_then_fail_or_pass(make: Callable[..., FaultyDriver], run: Any) -> None:
    d = make([{"op": "stat", "path": "/t", "action": "timeout", "delay": 0.01},
              {"op": "get_content", "path": "/s", "action": "slow", "delay": 0.01}])
    run(d.put_content("/t", b"t"))
    run(d.put_content("/s", b"s"))
    with pytest.raises(StorageError, match="timed out"):
        run(d.stat("/t"))
    assert run(d.get_content("/s")) == b"s"
    assert d.rules[1].fired == 1
    run(d.close())


def test_probability_is_reproducible_with_a_seed(make: Callable[..., FaultyDriver], run: Any) -> None:
    def pattern() -> list[bool]:
        d = make([{"op": "get_content", "action": "eio", "probability": 0.5}], seed=42)
        run(d.put_content("/p", b"p"))
        out = []
        for _ in range(40):
            try:
                run(d.get_content("/p"))
                out.append(False)
            except StorageError:
                out.append(True)
        run(d.close())
        return out
    first = pattern()
    assert first == pattern()
    assert 5 < sum(first) < 35          # both outcomes happen


def test_writer_faults_and_a_half_written_chunk(make: Callable[..., FaultyDriver], run: Any) -> None:
    d = make([{"op": "write", "path": "/up/*", "action": "eio", "nth": 2, "times": 1},
              {"op": "commit", "path": "/up/*", "action": "enospc"}])

    async def go() -> None:
        w = await d.writer("/up/data")
        await w.write(b"a" * 10)
        with pytest.raises(StorageError):
            await w.write(b"b" * 10)
        await w.write(b"c" * 10)
        with pytest.raises(StorageFull):
            await w.commit()
        await w.close()
    run(go())
    assert run(d.get_content("/up/data")) == b"a" * 10 + b"c" * 10
    run(d.close())


def test_stale_reads_serve_the_previous_version(make: Callable[..., FaultyDriver], run: Any) -> None:
    d = make(stale={"reads": 2, "path": "/dir/*"})
    run(d.put_content("/dir/tag", b"v1"))
    with pytest.raises(PathNotFound):                         # a new object "does not exist" for 2 reads
        run(d.get_content("/dir/tag"))
    with pytest.raises(PathNotFound):
        run(d.list("/dir"))                                   # the new name is not listed yet either
    assert run(d.get_content("/dir/tag")) == b"v1"            # the store caught up
    run(d.put_content("/dir/tag", b"v2-longer"))
    assert run(d.get_content("/dir/tag")) == b"v1"
    assert run(d.stat("/dir/tag")).size == 2
    assert run(d.get_content("/dir/tag")) == b"v2-longer"
    run(d.delete("/dir/tag"))
    assert run(d.list("/dir")) == ["tag"]                     # a delete is seen late too
    assert run(d.get_content("/dir/tag")) == b"v2-longer"
    with pytest.raises(PathNotFound):
        run(d.get_content("/dir/tag"))
    run(d.close())


def test_local_path_is_withheld_when_reads_can_fail(make: Callable[..., FaultyDriver], run: Any,
                                                    tmp_path: Path) -> None:
    d = make([{"op": "reader", "path": "/blobs/*", "action": "eio", "when": "after"}])
    run(d.put_content("/blobs/x", b"x" * 10))
    run(d.put_content("/other/x", b"x"))
    assert d.local_path("/blobs/x") is None

    async def read() -> bytes:
        out = b""
        async for chunk in d.reader("/blobs/x", chunk_size=4):
            out += chunk
        return out
    with pytest.raises(StorageError):
        run(read())
    run(d.close())


def test_config_builds_the_wrapper_and_refuses_bad_rules(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.yml"
    cfg_path.write_text(f"""
storage:
  faulty:
    driver: filesystem
    parameters: {{rootdirectory: {tmp_path / 'data'}}}
    seed: 3
    rules:
      - {{op: [put_content, move], path: "*/blobs/*", action: crash, when: after}}
    stale: {{reads: 1}}
""")
    cfg = load_config(cfg_path, env={})
    assert cfg.storage.driver_name == "faulty"
    d = create_driver(cfg.storage.driver_name, cfg.storage.driver_params)
    assert isinstance(d, FaultyDriver) and isinstance(d.inner, FilesystemDriver)
    assert d.rules[0].ops == {"put_content", "move"} and d.rules[0].action == "crash"
    assert not d.capabilities.directory_mtimes   # stale listings must not be hidden by the tag-list cache
    for bad in ({"driver": "faulty"}, {"driver": "filesystem"},
                {"driver": "inmemory", "rules": [{"action": "explode"}]},
                {"driver": "inmemory", "rules": [{"op": "stat", "when": "during"}]},
                {"driver": "inmemory", "rules": [{"op": "fsync"}]},
                {"driver": "inmemory", "stale": {"ops": ["put_content"]}},
                {"driver": "inmemory", "typo": 1}):
        with pytest.raises((ValueError, ConfigError)):
            create_driver("faulty", bad)


def test_stale_listing_hides_a_new_directory(make: Callable[..., FaultyDriver], run: Any) -> None:
    d = make(stale={"reads": 1, "path": "/tags/*"})
    run(d.put_content("/tags/old/current/link", b"a"))
    with pytest.raises(PathNotFound):          # served stale once: nothing there yet
        run(d.list("/tags"))
    assert run(d.list("/tags")) == ["old"]
    run(d.put_content("/tags/new/current/link", b"b"))
    assert run(d.list("/tags")) == ["old"]     # the new tag's directory is not listed yet
    assert run(d.list("/tags")) == ["new", "old"]
    run(d.close())


def test_a_bad_rule_is_a_config_error(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.yml"
    cfg_path.write_text("storage:\n  faulty:\n    driver: inmemory\n    rules: [{op: stat, action: explode}]\n")
    with pytest.raises(ConfigError, match=r"storage.faulty.rules\[0\].action"):
        load_config(cfg_path, env={})
