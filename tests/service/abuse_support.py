"""Tools of the abuse suite (tests/service/test_abuse_*.py): raw HTTP over sockets, probes that time the event
loop while a heavy request is served, the server's RSS, metrics, and hostile payloads.

Raw sockets rather than an HTTP client wherever the test is about the connection itself: a client library
would finish, retry or pool what the test means to leave half-done.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import re
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from tests.service import rest_support
from tests.service.rest_support import ServerProcess

T = TypeVar("T")
LOOP_BOUND_S = 0.100  # the longest a health probe may wait while the heaviest allowed request is served


# -- servers -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def started_server(
    template: Path, where: Path, *args: str, preexec_fn: Callable[[], None] | None = None, **kwargs: Any
) -> Iterator[ServerProcess]:
    """`python -m pixelserve.service` on a private copy of the test repository, ready, killed afterwards;
    `preexec_fn` runs in the child before the server starts (resource limits)."""
    repository = Path(shutil.copytree(template, where / "models"))
    popen = functools.partial(subprocess.Popen, preexec_fn=preexec_fn) if preexec_fn else subprocess.Popen
    with mock.patch.object(rest_support.subprocess, "Popen", popen):
        server = ServerProcess(repository, where / "server.log", *args, **kwargs)
    try:
        server.wait_ready(timeout_s=60)
        yield server
    finally:
        server.close()


def rss_bytes(pid: int) -> int:
    """The process's resident set size (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus text exposition's samples of `name` that carry `labels` (0 when there are none,
    as for a counter that never moved)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- raw HTTP ------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_reply(sock: socket.socket, *, head: bool = False) -> Reply:
    """One HTTP/1.1 response with a Content-Length (all of the server's are), read off a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a whole response head: {data[:200]!r}")
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = 0 if head else int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside a response body")
        body += chunk
    return Reply(int(status_line.split()[1]), headers, body)


def exchange(port: int, raw: bytes, timeout_s: float = 30.0) -> Reply:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(raw)
        return read_reply(sock)


def times_until_closed(socks: list[socket.socket], limit_s: float, since: float | None = None) -> list[float]:
    """Read every socket until the server closes it (EOF or reset), all at once; per socket the seconds from
    `since` (default: now) until it closed, or infinity when it was still open after `limit_s`."""
    since = time.monotonic() if since is None else since
    closed: dict[socket.socket, float] = {}
    while len(closed) < len(socks) and (left := since + limit_s - time.monotonic()) > 0:
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], min(left, 0.05))
        for sock in readable:
            try:
                if sock.recv(65536):
                    continue
            except ConnectionError:
                pass
            closed[sock] = time.monotonic() - since
    return [closed.get(sock, float("inf")) for sock in socks]


def connect(port: int, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def multipart(files: list[bytes], boundary: str = "abuse-boundary") -> tuple[bytes, str]:
    """A multipart/form-data body with one `files` part per image, and its Content-Type."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# -- payloads ------------------------------------------------------------------------------------------------


def one_bit_png(side: int) -> bytes:
    """A black 1-bit PNG: a few hundred bytes on the wire, side*side pixels to decode and resize."""
    buffer = io.BytesIO()
    Image.new("1", (side, side), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def v2_json_under(limit: int, margin: int = 64) -> bytes:
    """A V2 JSON request for [N, 8, 8, 1] UINT8 zeros whose size is within `margin` bytes below `limit`; the
    shape is honest, so the server parses every number before it can say anything about the batch."""
    skeleton = '{"inputs":[{"name":"image","datatype":"UINT8","shape":[%d,8,8,1],"data":[%s]}]}'
    images = (limit - margin) // (64 * 2)
    while True:
        body = (skeleton % (images, ",".join(["0"] * (images * 64)))).encode()
        if len(body) <= limit - 1:
            break
        images -= 1
    pad = limit - 1 - len(body)  # whitespace fills the rest exactly: limit - 1 bytes
    return body[:-1] + b" " * pad + body[-1:]


# -- probing the event loop ----------------------------------------------------------------------------------


@dataclass
class Probes:
    """Round trips of health probes sent while a heavy request was in flight."""

    rest: list[float] = field(default_factory=list)
    grpc: list[float] = field(default_factory=list)

    def worst(self) -> float:
        return max(self.rest + self.grpc, default=float("inf"))

    def summary(self) -> str:
        def ms(values: list[float]) -> str:
            return f"n={len(values)} max={max(values) * 1000:.0f} ms" if values else "n=0"

        return f"REST live {ms(self.rest)}, gRPC Check {ms(self.grpc)}"


def _probe_rest(port: int, ready: threading.Event, go: threading.Event, stop: threading.Event, into: list[float]):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def probe() -> float:
        started = time.perf_counter()
        connection.request("GET", "/v2/health/live")
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        return time.perf_counter() - started

    try:
        probe()  # connected and served once before timing starts
        ready.set()
        go.wait()
        while not stop.is_set():
            into.append(probe())
            time.sleep(0.002)
    finally:
        ready.set()
        connection.close()


def _probe_grpc(port: int, ready: threading.Event, go: threading.Event, stop: threading.Event, into: list[float]):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)  # connected before timing starts
        finally:
            ready.set()
        go.wait()
        while not stop.is_set():
            started = time.perf_counter()
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            into.append(time.perf_counter() - started)
            time.sleep(0.002)


def probed(server: ServerProcess, heavy: Callable[[threading.Event], T], timeout_s: float = 60.0) -> tuple[T, Probes]:
    """Run `heavy` (which sets the event it is given once its request is in flight, then waits for the
    answer) and probe REST /v2/health/live and gRPC health Check, on connections opened beforehand, back to
    back from the moment it is in flight until it returns."""
    in_flight, stop = threading.Event(), threading.Event()
    probes = Probes()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = heavy(in_flight)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            in_flight.set()
            stop.set()

    probers = []
    for target, into in ((_probe_rest, probes.rest), (_probe_grpc, probes.grpc)):
        ready = threading.Event()
        prober = threading.Thread(target=target, args=(server.http_port if target is _probe_rest else server.grpc_port,
                                                       ready, in_flight, stop, into))  # fmt: skip
        prober.start()
        assert ready.wait(timeout_s), "a health probe could not connect"
        probers.append(prober)
    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout_s)
    stop.set()
    in_flight.set()
    for prober in probers:
        prober.join(timeout_s)
    assert not worker.is_alive(), f"the heavy request did not finish in {timeout_s}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"], probes


def raw_heavy(port: int, raw: bytes, timeout_s: float = 60.0) -> Callable[[threading.Event], Reply]:
    """A heavy request over a raw socket: in flight once every byte of it has been written."""

    def send(in_flight: threading.Event) -> Reply:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(raw)
            in_flight.set()
            return read_reply(sock)

    return send
