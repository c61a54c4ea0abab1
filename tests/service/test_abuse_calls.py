"""No client can crash or wedge the server: every RPC of both gRPC services (and health and reflection on the
same port), and the hot REST routes, against a client that cancels mid-call, lets its deadline pass, drops
the connection in the middle of a message or sends bytes that are not protobuf, with every operations feature
on at once (access log, tracing, payload logging at rate 1, drift). After each case the same process is alive,
has nothing left in flight, and classifies a known image correctly over REST and gRPC.

One server process for the module, so a crash shows as the process dying (a cancelled ClassifyStream once
took it down with SIGSEGV in the access log's finish hook); a case that kills it gets the failure, and the
next case a fresh process.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf.message import DecodeError

from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from tests.service.abuse_support import metric_value, request_bytes
from tests.service.calls_support import (
    CALL_TIMEOUT_S,
    UNDECODABLE,
    Case,
    FeaturedServer,
    Rpc,
    access_entries,
    assert_alive,
    cancel_after_answers,
    catalogue,
    code_of,
    grpc_in_flight,
    send_part_and_leave,
    stream_call,
    uploads,
    wait_until,
)
from tests.service.h2_support import RawGrpc, disconnect_mid_message

RPCS = catalogue()
BY_NAME = {rpc.name: rpc for rpc in RPCS}
UNARY = [rpc for rpc in RPCS if rpc.kind == "unary"]
STREAMS = [rpc for rpc in RPCS if rpc.kind != "unary"]
BIDI = [rpc for rpc in RPCS if rpc.kind == "bidi"]
DEADLINE_S = 0.05  # shorter than any heavy request takes
UPLOADS = uploads()


def ids(rpcs: list[Rpc]) -> list[str]:
    return [rpc.id for rpc in rpcs]


@pytest.fixture(scope="module")
def featured(repository_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeaturedServer]:
    server = FeaturedServer(repository_template, tmp_path_factory.mktemp("calls"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def case(featured: FeaturedServer) -> Iterator[Case]:
    """A case; if the server died during it, an error at teardown says so, with the crashing stack."""
    begun = Case.begin(featured)
    yield begun
    assert_alive(begun.server, "during this case")


def test_undecodable_bytes_parse_as_no_request_type() -> None:
    """Else the undecodable cases would test nothing."""
    for message in (pb.ClassifyRequest, pb.ListModelsRequest, v2_pb.ModelInferRequest, v2_pb.ServerLiveRequest):
        with pytest.raises(DecodeError):
            message.FromString(UNDECODABLE)


# -- gRPC ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rpc", UNARY, ids=ids(UNARY))
def test_unary_call_cancelled_mid_call_leaves_server_serving(case: Case, rpc: Rpc) -> None:
    with case.channel() as channel:
        future = rpc.callable(channel).future(rpc.heavy, timeout=CALL_TIMEOUT_S)
        if rpc.tracked:  # the server is working on it: cancel now
            wait_until(lambda: future.done() or grpc_in_flight(case.server) > 0, 10, "in flight")
            assert future.cancel(), "the heavy call finished before it could be cancelled"
        else:  # answered within a millisecond: cancel as soon as it is sent
            future.cancel()
    case.still_serving()


@pytest.mark.parametrize("rpc", STREAMS, ids=ids(STREAMS))
def test_stream_cancelled_mid_call_leaves_server_serving(case: Case, rpc: Rpc) -> None:
    """The first answer is in; more heavy messages are on their way or being worked on."""
    with stream_call(case, rpc, [rpc.heavy] * 3, timeout=CALL_TIMEOUT_S) as call:
        next(call)
        call.cancel()
        assert code_of(lambda: list(call)) == grpc.StatusCode.CANCELLED
    case.still_serving()


@pytest.mark.parametrize("rpc", BIDI, ids=ids(BIDI))
def test_stream_cancelled_after_some_answers_with_many_in_flight_leaves_server_serving(case: Case, rpc: Rpc) -> None:
    """The client that once crashed the server: 400 messages sent, 40 answers read, cancelled; twice."""
    for attempt in (1, 2):
        cancel_after_answers(case, rpc)
        assert_alive(case.server, f"after cancel {attempt}")
    case.still_serving()


@pytest.mark.parametrize("rpc", RPCS, ids=ids(RPCS))
def test_deadline_passing_mid_call_leaves_server_serving(case: Case, rpc: Rpc) -> None:
    """The client's deadline passes while the server works (a heavy request) or while a stream is open;
    then a deadline sent in grpc-timeout passes while the server holds half a message."""
    if rpc.kind == "unary":
        with case.channel() as channel:
            code = code_of(lambda: rpc.callable(channel)(rpc.heavy, timeout=DEADLINE_S))
        expected = {grpc.StatusCode.DEADLINE_EXCEEDED} | (set() if rpc.tracked else {rpc.answer_code})
    else:
        with stream_call(case, rpc, [rpc.heavy] * 3, timeout=4 * DEADLINE_S) as call:
            code = code_of(lambda: list(call))
        expected = {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert code in expected, code

    raw = RawGrpc(case.server.grpc_port)
    try:
        raw.open(rpc.path, timeout="100m")
        raw.send(b"\x00" + (1 << 20).to_bytes(4, "big") + rpc.heavy[:1000])
        assert raw.ended() is not None, "the server did not end the call at its deadline"
    finally:
        raw.close()
    case.still_serving()


@pytest.mark.parametrize("rpc", RPCS, ids=ids(RPCS))
def test_disconnect_mid_message_leaves_server_serving(case: Case, rpc: Rpc) -> None:
    """The connection drops with a message half received (after a whole one was answered, on a bidi stream)."""
    disconnect_mid_message(case.server.grpc_port, rpc)
    case.still_serving()


@pytest.mark.parametrize("rpc", RPCS, ids=ids(RPCS))
def test_undecodable_message_is_refused_and_server_keeps_serving(case: Case, rpc: Rpc) -> None:
    """Bytes that are not protobuf: INVALID_ARGUMENT (on a bidi stream, after a good message was answered)."""
    with case.channel() as channel:
        call = rpc.callable(channel)
        if rpc.kind == "unary":
            code = code_of(lambda: call(UNDECODABLE, timeout=CALL_TIMEOUT_S))
        elif rpc.kind == "server_stream":
            code = code_of(lambda: list(call(UNDECODABLE, timeout=CALL_TIMEOUT_S)))
        else:
            answers: list[bytes] = []
            code = code_of(lambda: answers.extend(call(iter([rpc.light, UNDECODABLE]), timeout=CALL_TIMEOUT_S)))
            assert len(answers) <= 1, answers
    if rpc.garbage_code is None:  # grpcio's own servicer: any refusal
        assert code != grpc.StatusCode.OK
    else:
        assert code == rpc.garbage_code, code
    case.still_serving()


def test_twenty_stream_cancels_of_each_kind_in_a_row_leave_server_serving(case: Case) -> None:
    """Done when: 20 ClassifyStream and 20 ModelStreamInfer cancels in a row (400 sent, 40 read, cancelled
    each time) with every operations feature on; the server alive after each and right at the end."""
    for rpc in (BY_NAME["ClassifyStream"], BY_NAME["ModelStreamInfer"]):
        for attempt in range(1, 21):
            cancel_after_answers(case, rpc)
            assert_alive(case.server, f"after {rpc.name} cancel {attempt}")
    case.still_serving()


# -- REST ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["v2-infer", "classify-raw", "classify-multipart"])
def test_rest_disconnect_mid_body_leaves_server_serving(case: Case, route: str) -> None:
    """Headers promise the whole body, a third of it arrives, then the client closes."""
    send_part_and_leave(case.server.http_port, *UPLOADS[route])
    case.still_serving()


@pytest.mark.parametrize("route", ["v2-infer", "classify-raw", "denoise-multipart"])
def test_rest_disconnect_mid_response_leaves_server_serving(case: Case, route: str) -> None:
    """A whole request whose answer is large; the client, with a small receive buffer, closes with the
    answer unread (a reset) as soon as it has begun."""
    path, body, headers = UPLOADS[route]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.settimeout(10)
        sock.connect(("127.0.0.1", case.server.http_port))
        sock.sendall(request_bytes("POST", path, body, headers))
        readable, _, _ = select.select([sock], [], [], CALL_TIMEOUT_S)
        assert readable, "no answer began"
    finally:
        sock.close()
    case.still_serving()


# -- the features were on ------------------------------------------------------------------------------------


def test_every_operations_feature_was_on(case: Case) -> None:
    """The matrix means something only if each feature ran: gRPC access-log entries carry trace ids, payload
    rows are logged and the drift window holds images."""
    case.still_serving()
    entries = access_entries(case.server, 0)
    assert entries and all(e.get("trace_id") for e in entries if e["protocol"] == "grpc"), entries[-3:]

    def counted(name: str) -> bool:
        return metric_value(httpx.get(f"{case.server.url}/metrics", timeout=10).text, name) > 0

    wait_until(lambda: counted("pixelserve_payload_log_rows_total"), 10, "payload rows logged", poll_s=0.1)
    wait_until(lambda: counted("pixelserve_drift_window_images"), 10, "drift scored", poll_s=0.1)
