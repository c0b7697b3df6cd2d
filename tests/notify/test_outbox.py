"""The outbox and the delivery rules, without a server: real SQLite files in tmp."""
from __future__ import annotations

import asyncio
import ipaddress
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from fastreg.netguard import address_allowed
from fastreg.notify.outbox import Outbox
from fastreg.notify.webhooks import AddressRefused, EndpointSpec, post, resolve


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_concurrent_adds_share_commits_and_persist(tmp_path: Path) -> None:
    commits = 0

    async def main() -> None:
        nonlocal commits
        ob = Outbox(tmp_path / "ob", maxevents=1000)
        real = ob._write

        def counting(rows):  # type: ignore[no-untyped-def]
            nonlocal commits
            commits += 1
            return real(rows)

        ob._write = counting  # type: ignore[method-assign]
        await asyncio.gather(*(ob.add([("a", f"id{i}", b"{}")]) for i in range(200)))
        await ob.close()

    run(main())
    assert 1 <= commits < 200                       # group commit: far fewer transactions than events
    rows = sqlite3.connect(tmp_path / "ob" / Outbox.FILENAME).execute(
        "SELECT event_id FROM outbox ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [f"id{i}" for i in range(200)]   # every event, in order


ROUNDS = 10


def _writer_process(directory: str, tag: str, barrier: object) -> None:
    async def main(d: str) -> None:
        ob = Outbox(d, maxevents=10_000)
        await asyncio.gather(*(ob.add([("a", f"{tag}-{i}", b"")]) for i in range(20)))
        await ob.close()

    for r in range(ROUNDS):
        barrier.wait()  # type: ignore[attr-defined]
        asyncio.run(main(f"{directory}/{r}"))


def test_processes_share_a_new_outbox(tmp_path: Path) -> None:
    """Workers start together on a database that does not exist yet, and all write to it."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4, timeout=20)
    procs = [ctx.Process(target=_writer_process, args=(str(tmp_path), f"p{n}", barrier)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    for r in range(ROUNDS):
        rows = sqlite3.connect(tmp_path / str(r) / Outbox.FILENAME).execute("SELECT event_id FROM outbox").fetchall()
        assert sorted(x[0] for x in rows) == sorted(f"p{n}-{i}" for n in range(4) for i in range(20))


def test_fetch_delete_and_depth_per_endpoint(tmp_path: Path) -> None:
    async def main() -> None:
        ob = Outbox(tmp_path, maxevents=100)
        await ob.add([("a", "1", b"x"), ("b", "1", b"x")])
        await ob.add([("a", "2", b"y")])
        assert await ob.depth() == {"a": 2, "b": 1}
        got = await ob.fetch("a", 10)
        assert [(r[1], r[2]) for r in got] == [("1", b"x"), ("2", b"y")]
        await ob.delete([got[0][0]])
        assert [r[1] for r in await ob.fetch("a", 10)] == ["2"]
        assert [r[1] for r in await ob.fetch("b", 10)] == ["1"]
        await ob.close()
        again = Outbox(tmp_path, maxevents=100)       # reopened: the rest is still there
        assert await again.depth() == {"a": 1, "b": 1}
        await again.close()

    run(main())


def test_forget_endpoints_no_longer_configured(tmp_path: Path) -> None:
    async def main() -> None:
        ob = Outbox(tmp_path, maxevents=100)
        await ob.add([("a", "1", b""), ("old", "1", b""), ("old", "2", b""), ("b", "3", b"")])
        assert await ob.forget_endpoints_except(["a", "b"]) == {"old": 2}
        assert await ob.depth() == {"a": 1, "b": 1}
        await ob.close()

    run(main())


def test_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    dropped: list[int] = []

    async def main() -> None:
        ob = Outbox(tmp_path, maxevents=5, on_drop=dropped.append)
        for i in range(8):
            await ob.add([("a", str(i), b"")])
        assert [r[1] for r in await ob.fetch("a", 100)] == ["3", "4", "5", "6", "7"]
        assert await ob.dropped() == 3
        await ob.close()

    run(main())
    assert sum(dropped) == 3


@pytest.mark.parametrize(("addr", "ok"), [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.100.100.200", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fd00:ec2::254", False), ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False), ("2002:7f00:1::", False), ("::", False),
    ("93.184.216.34", True), ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("::ffff:8.8.8.8", True),
])
def test_address_allowed(addr: str, ok: bool) -> None:
    assert address_allowed(ipaddress.ip_address(addr)) is ok


def test_resolve_refuses_names_of_private_addresses() -> None:
    with pytest.raises(AddressRefused):
        run(resolve("localhost", 80, allow_private=False))
    assert run(resolve("127.0.0.1", 80, allow_private=True)) == ["127.0.0.1"]


def test_post_sends_envelope_headers_and_url_credentials() -> None:
    got: list[bytes] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        status = await post(f"http://u%40x:p%3Aw@127.0.0.1:{port}/in?k=v", b'{"events":[]}',
                            headers=[("X-A", "1")], allow_private=True, timeout=5)
        assert status == 204
        server.close()
        await server.wait_closed()

    run(main())
    head = got[0].decode()
    assert head.startswith("POST /in?k=v HTTP/1.1\r\n")
    assert "\r\nHost: 127.0.0.1:" in head and "u%40x" not in head
    assert "\r\nContent-Type: application/vnd.docker.distribution.events.v1+json\r\n" in head
    assert "\r\nContent-Length: 13\r\n" in head and "\r\nX-A: 1\r\n" in head
    assert "\r\nAuthorization: Basic dUB4OnA6dw==\r\n" in head      # base64("u@x:p:w")


def test_redirects_are_not_followed(tmp_path: Path) -> None:
    """A 3xx is a failed delivery; the Location is never fetched."""
    seen: list[bytes] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(await reader.readline())
            writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/\r\n"
                         b"Content-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(Exception, match="redirects are not followed"):
            await post(f"http://127.0.0.1:{port}/x", b"{}", allow_private=True, timeout=5)
        server.close()
        await server.wait_closed()

    run(main())
    assert seen == [b"POST /x HTTP/1.1\r\n"]


def test_backoff_schedule() -> None:
    spec = EndpointSpec(name="a", url="http://x", threshold=3, backoff=1.0, maxbackoff=10.0)
    assert [spec.delay(n) for n in range(1, 9)] == [0.05, 0.1, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert spec.wants("push", "m") and not EndpointSpec(name="a", url="", ignore_actions=frozenset({"push"})
                                                        ).wants("push", "m")
