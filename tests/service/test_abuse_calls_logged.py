"""What the logs say about a client that left (test_abuse_calls.py has the matrix): with every operations
feature on, a request its client abandoned is logged neither as a success nor as a server fault, and leaving
does not write a traceback into the server's log (a hostile client could flood it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from tests.service.calls_support import (
    CALL_TIMEOUT_S,
    Case,
    FeaturedServer,
    assert_alive,
    cancel_after_answers,
    catalogue,
    code_of,
    grpc_in_flight,
    logged,
    send_part_and_leave,
    uploads,
    wait_until,
)

BY_NAME = {rpc.name: rpc for rpc in catalogue()}
UPLOADS = uploads()
DEADLINE_S = 0.25  # long enough for the call to reach its handler on a busy machine, then it passes mid-call


def heavier(rpc_name: str, times: int = 4) -> bytes:
    """The catalogue's heavy request with its images repeated: about a second of work, well past DEADLINE_S."""
    request = pb.ClassifyRequest.FromString(BY_NAME[rpc_name].heavy)
    request.inputs.images.extend(list(request.inputs.images) * (times - 1))
    return request.SerializeToString()


@pytest.fixture(scope="module")
def featured(repository_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeaturedServer]:
    server = FeaturedServer(repository_template, tmp_path_factory.mktemp("calls-logged"))
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


def leave(case: Case, how: str, rid: str) -> None:
    """One request, sent as `rid`, that its client abandons `how`."""
    if how.startswith("rest-"):
        path, body, headers = UPLOADS[how.removeprefix("rest-").removesuffix("-mid-body")]
        send_part_and_leave(case.server.http_port, path, body, {**headers, "x-request-id": rid})
        return
    rpc = BY_NAME[how.split("-")[1]]
    metadata = (("x-request-id", rid),)
    if rpc.kind == "bidi":
        cancel_after_answers(case, rpc, metadata=metadata)
        return
    with case.channel() as channel:
        if how.endswith("deadline"):
            code_of(lambda: rpc.callable(channel)(heavier(rpc.name), timeout=DEADLINE_S, metadata=metadata))
        else:
            future = rpc.callable(channel).future(rpc.heavy, timeout=CALL_TIMEOUT_S, metadata=metadata)
            wait_until(lambda: future.done() or grpc_in_flight(case.server) > 0, 10, "in flight")
            assert future.cancel(), "the heavy call finished before it could be cancelled"


@pytest.mark.parametrize(
    "how",
    [
        "rest-v2-infer-mid-body",  # logged 500 before; 499 (client closed request) now
        "rest-classify-raw-mid-body",
        "rest-classify-multipart-mid-body",
        # Logged UNKNOWN (unary) and OK (streams) before the hooks of bc3d9a9; CANCELLED or DEADLINE_EXCEEDED now.
        "grpc-Classify-cancelled",
        "grpc-Classify-deadline",
        "grpc-ClassifyStream-cancelled",
        "grpc-ModelStreamInfer-cancelled",
    ],
)
def test_client_that_left_is_logged_neither_as_success_nor_as_server_fault(case: Case, how: str) -> None:
    """Request metrics count these CANCELLED; the access log must not say OK, UNKNOWN or 5xx for them."""
    rid = f"left-{how}"
    leave(case, how, rid)
    case.still_serving()
    entry = logged(case.server, case.since, rid)
    if how.startswith("rest-"):
        assert 400 <= entry["status"] < 500, entry  # 499 (client closed request) on the hot routes
    else:
        assert entry["code"] in ("CANCELLED", "DEADLINE_EXCEEDED"), entry


@pytest.mark.parametrize(
    "how",
    [
        "rest-v2-infer-mid-body",
        "grpc-Classify-cancelled",
        "grpc-ClassifyStream-cancelled",
        "grpc-ModelStreamInfer-cancelled",
    ],
)
def test_client_that_left_writes_no_traceback_into_the_server_log(case: Case, how: str) -> None:
    """Before the hooks of bc3d9a9, tracing wrote "Failed to detach context" and a traceback for every
    cancelled stream: a client could fill the log at will."""
    for attempt in range(3):
        leave(case, how, f"flood-{how}-{attempt}")
    case.still_serving()  # every line the cases wrote is in the log by now
    with case.server.log_path.open("rb") as log:
        log.seek(case.since)
        written = log.read().decode(errors="replace")
    if "Traceback" in written:
        start = written.index("Traceback")
        pytest.fail(f"{written.count('Traceback')} tracebacks, the first:\n{written[start - 200 : start + 1500]}")
