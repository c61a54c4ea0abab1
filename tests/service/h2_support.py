"""A bare HTTP/2 client for the gRPC port, written frame by frame: what a gRPC library will not do, such as
stopping in the middle of a message, or letting a deadline pass with half a message sent.

No HPACK state: headers go out as literals without indexing, and the server's own headers are never decoded
(the frames' types and flags say all the tests need).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from tests.service.calls_support import Rpc

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MAX_FRAME = 16384  # the default SETTINGS_MAX_FRAME_SIZE; the first 65535 bytes fit the default windows


def _hpack_int(value: int, prefix_bits: int = 7) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out, value = bytearray([limit]), value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes([*out, value])


def _hpack(headers: list[tuple[str, str]]) -> bytes:
    """Literal header fields without indexing, new names, no Huffman: valid HPACK with no table state."""
    block = b""
    for name, value in headers:
        block += b"\x00" + _hpack_int(len(name)) + name.encode() + _hpack_int(len(value)) + value.encode()
    return block


class RawGrpc:
    """One HTTP/2 connection to the gRPC port, written frame by frame."""

    def __init__(self, port: int, timeout_s: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buffer = b""
        self.sock.sendall(PREFACE + self._frame(SETTINGS, 0, 0, b""))
        self.until(lambda kind, flags, _stream, _payload: kind == SETTINGS and not flags & ACK)

    @staticmethod
    def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        while len(self.buffer) < 9 or len(self.buffer) < 9 + int.from_bytes(self.buffer[:3], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the HTTP/2 connection")
            self.buffer += chunk
        length = int.from_bytes(self.buffer[:3], "big")
        kind, flags, stream = self.buffer[3], self.buffer[4], struct.unpack(">I", self.buffer[5:9])[0] & 0x7FFFFFFF
        payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
        return kind, flags, stream, payload

    def until(self, wanted: Callable[[int, int, int, bytes], bool]) -> list[tuple[int, int, int, bytes]]:
        """Read frames (acknowledging the server's settings) up to and including the first `wanted` one."""
        seen = []
        while True:
            frame = self._read_frame()
            seen.append(frame)
            if frame[0] == SETTINGS and not frame[1] & ACK:
                self.sock.sendall(self._frame(SETTINGS, ACK, 0, b""))
            if wanted(*frame):
                return seen
            assert frame[0] != GOAWAY, f"the server sent GOAWAY: {frame[3]!r}"

    def open(self, path: str, stream: int = 1, timeout: str | None = None) -> None:
        """HEADERS of a call; `timeout` is a grpc-timeout value ("100m": 100 ms)."""
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
                   ("content-type", "application/grpc"), ("te", "trailers")]  # fmt: skip
        headers += [("grpc-timeout", timeout)] if timeout else []
        self.sock.sendall(self._frame(HEADERS, END_HEADERS, stream, _hpack(headers)))

    def send(self, data: bytes, stream: int = 1) -> None:
        for start in range(0, len(data), MAX_FRAME):
            self.sock.sendall(self._frame(DATA, 0, stream, data[start : start + MAX_FRAME]))

    def message(self, payload: bytes, stream: int = 1) -> None:
        """One whole gRPC message (uncompressed, length-prefixed)."""
        self.send(b"\x00" + struct.pack(">I", len(payload)) + payload, stream)

    def first_answer(self, stream: int = 1) -> None:
        """Wait for the server's first DATA on `stream`: its handler is running."""

        def answered_or_ended(kind: int, flags: int, on: int, _: bytes) -> bool:
            return on == stream and (kind in (DATA, RST_STREAM) or bool(flags & END_STREAM))

        frames = self.until(answered_or_ended)
        assert frames[-1][0] == DATA, f"the call ended before answering: {frames[-1]}"

    def ended(self, stream: int = 1) -> tuple[int, int, int, bytes] | None:
        """The frame that ended `stream` (trailers or RST_STREAM), or None if none came within the timeout."""
        try:
            frames = self.until(lambda kind, flags, s, _: s == stream and (kind == RST_STREAM or flags & END_STREAM))
        except TimeoutError:
            return None
        return frames[-1]

    def settled(self) -> None:
        """A PING round trip: the server has read every frame sent before it."""
        self.sock.sendall(self._frame(PING, 0, 0, b"matrix!!"))
        self.until(lambda kind, flags, _stream, _payload: kind == PING and bool(flags & ACK))

    def close(self) -> None:
        self.sock.close()


def disconnect_mid_message(port: int, rpc: Rpc, declared: int = 1 << 20, sent: int = 48 * 1024) -> None:
    """Open `rpc`; a bidi one first gets a whole message and answers it; then a message that declares
    `declared` bytes arrives `sent` bytes in, the server reads it, and the connection drops."""
    raw = RawGrpc(port)
    try:
        raw.open(rpc.path)
        if rpc.kind == "bidi":
            raw.message(rpc.light)
            raw.first_answer()
        body = (rpc.heavy * (sent // max(len(rpc.heavy), 1) + 1))[:sent]
        raw.send(b"\x00" + struct.pack(">I", declared) + body)
        raw.settled()
    finally:
        raw.close()
