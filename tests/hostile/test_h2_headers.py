"""HTTP/2 (h2c, prior knowledge) requests with a huge header list: refused at the server's bound
(``fastreg.server.H2_MAX_HEADERS``, 64 KiB) instead of buffered (granian's default allows 16 MiB a
stream, 200 streams a connection).  A raw client: preface, SETTINGS, one HEADERS frame and its
CONTINUATIONs with HPACK literals (no Huffman), then whatever the server answers."""
from __future__ import annotations

import socket
import struct
import time

from fastreg.server import H2_MAX_HEADERS

from .conftest import Seeded

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, SETTINGS, GOAWAY, RST_STREAM, CONTINUATION = 0x1, 0x4, 0x7, 0x3, 0x9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _int(value: int, prefix: int, first: int = 0) -> bytes:
    """HPACK integer (RFC 7541 5.1) with a `prefix`-bit prefix."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes([first | value])
    out, value = [first | top], value - top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes([*out, value])


def _literal(name: bytes, value: bytes) -> bytes:
    """Literal header field without indexing, new name (RFC 7541 6.2.2)."""
    return b"\x00" + _int(len(name), 7) + name + _int(len(value), 7) + value


def _request(port: int, fields: list[tuple[bytes, bytes]], deadline: float = 15.0) -> tuple[int | None, bool]:
    """(the :status answered to stream 1, or None; whether the server reset the stream or the connection)."""
    block = b"".join(_literal(n, v) for n, v in fields)
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)] or [b""]
    out = PREFACE + _frame(SETTINGS, 0, 0, b"")
    for i, chunk in enumerate(chunks):
        flags = (END_HEADERS if i == len(chunks) - 1 else 0) | (END_STREAM if i == 0 else 0)
        out += _frame(HEADERS if i == 0 else CONTINUATION, flags, 1, chunk)
    refused = False
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as s:
        try:
            s.sendall(out)
        except OSError:
            return None, True
        buf, until = b"", time.monotonic() + deadline
        while time.monotonic() < until:
            try:
                data = s.recv(65536)
            except OSError:
                return None, True
            if not data:
                return None, True
            buf += data
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload, buf = buf[9:9 + length], buf[9 + length:]
                if kind == SETTINGS and not flags & ACK:
                    try:
                        s.sendall(_frame(SETTINGS, ACK, 0, b""))
                    except OSError:
                        return None, True
                elif kind in (GOAWAY, RST_STREAM):
                    refused = True
                    return None, refused
                elif kind == HEADERS and stream == 1:
                    # the server's first field is :status, indexed (0x88 = 200, 0x8d = 404, ...) or literal
                    return _status(payload), refused
    return None, refused


def _status(block: bytes) -> int | None:
    """The :status of a response header block: indexed (RFC 7541 Appendix A), or a literal with
    the indexed :status name whose value is plain or Huffman-coded digits."""
    static = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500}
    if block and block[0] in static:
        return static[block[0]]
    if len(block) < 2 or block[0] & 0x0F not in range(8, 15):
        return None
    n, huffman = block[1] & 0x7F, bool(block[1] & 0x80)
    value = block[2:2 + n]
    return int(_huffman_digits(value) if huffman else value)


def _huffman_digits(data: bytes) -> str:
    """RFC 7541 Appendix B, digits only: '0'-'2' are 5 bits (00000-00010), '3'-'9' 6 bits (011001-011111)."""
    bits = "".join(f"{b:08b}" for b in data)
    out, i = "", 0
    while i + 5 <= len(bits) and not set(bits[i:]) <= {"1"}:
        if bits[i:i + 5] in ("00000", "00001", "00010"):
            out, i = out + str(int(bits[i:i + 5], 2)), i + 5
        else:
            out, i = out + str(int(bits[i:i + 6], 2) - 0b011001 + 3), i + 6
    return out


BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/v2/"), (b":authority", b"127.0.0.1")]


def test_h2c_request_within_the_header_bound_is_served(seeded: Seeded) -> None:
    status, refused = _request(seeded.port, [*BASE, (b"x-fill", b"a" * 8000)])
    assert (status, refused) == (200, False)


def test_h2c_header_list_over_the_bound_is_refused(seeded: Seeded) -> None:
    for size in (H2_MAX_HEADERS + 1024, 1 << 20):
        status, refused = _request(seeded.port, [*BASE, (b"x-fill", b"a" * size)])
        assert refused or status == 431, (size, status)
    assert _request(seeded.port, BASE) == (200, False)          # and the server serves on
