"""Slow clients cannot hold the server: idle, half-sent and trickling connections are closed by deadline and
counted by reason, a connection cap refuses the excess at once, a drain does not wait for stalled uploads,
and running out of descriptors neither kills the listener nor floods the log.

Everything here goes over raw loopback sockets to a whole `python -m pixelserve.service` process.
"""

from __future__ import annotations

import resource
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.abuse_support import (
    connect,
    exchange,
    metric_value,
    read_reply,
    request_bytes,
    started_server,
    times_until_closed,
)
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import ServerProcess

DEADLINE_S = 1.0
SLACK_S = 1.0
MAX_CONNECTIONS = 20
CLOSED = "pixelserve_connections_closed_total"
LIVE = request_bytes("GET", "/v2/health/live")
PNG = encode_image(random_images(1)[0])


@pytest.fixture(scope="module")
def server(repository_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = [
        "--header-timeout-s", str(DEADLINE_S),
        "--body-timeout-s", str(DEADLINE_S),
        "--keep-alive-timeout-s", str(DEADLINE_S),
        "--max-connections", str(MAX_CONNECTIONS),
    ]  # fmt: skip
    with started_server(repository_template, tmp_path_factory.mktemp("hygiene"), *args) as process:
        yield process


def closures(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    reasons = ("header_timeout", "body_timeout", "over_limit", "stalled_at_shutdown")
    return {reason: metric_value(text, CLOSED, reason=reason) for reason in reasons}


def assert_serving(server: ServerProcess) -> None:
    assert exchange(server.http_port, LIVE).status == 200
    classify = request_bytes("POST", f"/v1/models/{CLASSIFIER}:classify", PNG, {"Content-Type": "image/png"})
    reply = exchange(server.http_port, classify)
    assert reply.status == 200, reply.body[:300]


def test_slow_clients_are_closed_by_deadline_and_counted(server: ServerProcess) -> None:
    """Each of these would hold a socket forever without deadlines; all are started together and must be
    closed within the deadline plus slack (and not long before it: the deadline is what closed them)."""
    before = closures(server)
    v2_head = (
        f"POST /v2/models/{CLASSIFIER}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    multipart_head = (
        f"POST /v1/models/{CLASSIFIER}:classify HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n--b\r\n"
    )
    cases = {
        "idle connection": b"",
        "half a request line": b"GET /v2/hea",
        "unfinished headers": b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n",
        "short body (fast path)": v2_head.encode() + b'{"inputs": [',
        "short body (FastAPI route)": multipart_head.encode(),
    }
    started = time.monotonic()
    socks = [connect(server.http_port, data) for data in cases.values()]
    try:
        took = times_until_closed(socks, DEADLINE_S + SLACK_S + 2, since=started)
    finally:
        for sock in socks:
            sock.close()
    wrong = {name: t for name, t in zip(cases, took, strict=True) if not DEADLINE_S - 0.1 <= t <= DEADLINE_S + SLACK_S}
    assert not wrong, f"closed after (s), expected {DEADLINE_S}..{DEADLINE_S + SLACK_S}: {wrong}"

    after = closures(server)
    delta = {reason: after[reason] - before[reason] for reason in after}
    assert delta == {"header_timeout": 3, "body_timeout": 2, "over_limit": 0, "stalled_at_shutdown": 0}, delta
    assert_serving(server)
    assert "Traceback" not in server.log(), server.log()[-3000:]


def short_bodies(server: ServerProcess) -> list[socket.socket]:
    """Two uploads that stop halfway: one on the fast path (V2 infer), one on a FastAPI route (multipart)."""
    heads = [
        (f"POST /v2/models/{CLASSIFIER}/infer", "application/json", b'{"inputs": ['),
        (f"POST /v1/models/{CLASSIFIER}:classify", "multipart/form-data; boundary=b", b"--b\r\n"),
    ]
    return [
        connect(server.http_port, f"{line} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
                f"Content-Length: 100000\r\n\r\n".encode() + start)
        for line, kind, start in heads
    ]  # fmt: skip


def test_abandoned_uploads_are_not_counted_as_internal_errors(server: ServerProcess) -> None:
    """A slowloris run must not look like server failures on the error-rate dashboard."""

    def scrape() -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        return metric_value(text, "pixelserve_requests_total", code="INTERNAL")

    before = scrape()
    socks = short_bodies(server)
    try:
        assert max(times_until_closed(socks, DEADLINE_S + SLACK_S)) <= DEADLINE_S + SLACK_S
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.1)
    assert scrape() == before


def test_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    with connect(server.http_port, LIVE) as sock:
        assert read_reply(sock).status == 200
        (took,) = times_until_closed([sock], DEADLINE_S + SLACK_S + 2)
    assert took <= DEADLINE_S + SLACK_S, f"an idle keep-alive connection stayed open {took:.1f}s"


def test_connections_over_the_cap_are_closed_at_once(server: ServerProcess) -> None:
    """40 connections against a cap of 20: the excess is closed on arrival, well before any deadline, and the
    ones held are served."""
    before = closures(server)
    socks = [connect(server.http_port) for _ in range(2 * MAX_CONNECTIONS)]
    try:
        took = times_until_closed(socks, DEADLINE_S / 2)
        held = [sock for sock, t in zip(socks, took, strict=True) if t == float("inf")]
        assert len(held) == MAX_CONNECTIONS, f"{len(held)} of {len(socks)} connections held, cap {MAX_CONNECTIONS}"
        held[0].sendall(LIVE)
        assert read_reply(held[0]).status == 200
    finally:
        for sock in socks:
            sock.close()
    assert closures(server)["over_limit"] - before["over_limit"] == MAX_CONNECTIONS
    time.sleep(0.2)  # the server notices the closed ones
    assert_serving(server)


def test_sigterm_with_stalled_uploads_exits_inside_the_grace(repository_template: Path, tmp_path: Path) -> None:
    """Three clients stop sending mid-body (one on the fast path, one multipart, one JSON task upload): the
    drain does not wait the 10 s grace for them."""
    heads = [
        (f"POST /v2/models/{CLASSIFIER}/infer", "application/json", b'{"inputs": ['),
        (f"POST /v1/models/{CLASSIFIER}:classify", "multipart/form-data; boundary=b", b"--b\r\n"),
        (f"POST /v1/models/{CLASSIFIER}:classify", "application/json", b'{"images": ["'),
    ]
    with started_server(repository_template, tmp_path, "--drain-grace-s", "10") as server:
        socks = [
            connect(server.http_port, f"{line} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: 100000\r\n\r\n".encode() + start)
            for line, kind, start in heads
        ]  # fmt: skip
        try:
            time.sleep(0.5)  # the server has read every head
            signalled = time.monotonic()
            server.terminate()
            code = server.wait(timeout_s=15)
            took = time.monotonic() - signalled
        finally:
            for sock in socks:
                sock.close()
        log = server.log()
    assert code == 0, log[-3000:]
    assert took < 4.0, f"exit took {took:.1f}s with a 10 s grace\n{log[-3000:]}"
    assert "closed: core released" in log and "Traceback" not in log, log[-3000:]


def _limit_descriptors(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_descriptor_exhaustion_recovers_with_a_small_log(repository_template: Path, tmp_path: Path, loop: str):
    """64 descriptors (the server needs about 25) and a connection cap above that: 150 connections exhaust
    them; accept() fails for two seconds; once they close, health answers again and the log holds a few
    lines, not a flood of tracebacks."""
    descriptors = 64
    args = ["--max-connections", "1000", "--event-loop", loop]
    with started_server(
        repository_template, tmp_path, *args, preexec_fn=lambda: _limit_descriptors(descriptors)
    ) as server:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        assert f"Max open files            {descriptors}" in limits, limits
        size_before = server.log_path.stat().st_size
        socks: list[socket.socket] = []
        try:
            for _ in range(150):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", server.http_port))
                socks.append(sock)
            select.select([], socks, [], 2.0)  # the kernel completes them; the server runs out accepting them
            time.sleep(2.0)
            assert server.process.poll() is None, server.log()[-3000:]
        finally:
            for sock in socks:
                sock.close()
        deadline = time.monotonic() + 15
        status = None
        while time.monotonic() < deadline:
            try:
                status = exchange(server.http_port, LIVE, timeout_s=2).status
                if status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        assert status == 200, server.log()[-3000:]
        grown = server.log_path.stat().st_size - size_before
    assert grown < 8 * 1024, f"the log grew {grown} bytes:\n{server.log()[-3000:]}"
