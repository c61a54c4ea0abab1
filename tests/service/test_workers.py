"""`--workers 2`: two server processes on one pair of ports that look like one server from outside."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import httpx
import pytest
import tritonclient.grpc as triton_grpc
from prometheus_client.parser import text_string_to_metric_families

from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import server_process

REQUESTS = 40


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def requests_total(exposition: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "pixelserve_requests"
        for sample in family.samples
        if sample.name == "pixelserve_requests_total" and sample.labels["model"] == CLASSIFIER
    )


@pytest.mark.slow
def test_two_workers_share_the_ports_and_answer_as_one_server(model_repository: Path, tmp_path: Path) -> None:
    png = encode_image(random_images(1)[0])
    args = ("--workers", "2", "--allow-repository-control", "true")  # refused anyway: it would reach one worker
    with server_process(model_repository, tmp_path / "server.log", *args) as server:
        assert len(children(server.process.pid)) == 2, server.log()
        for _ in range(REQUESTS // 2):  # a new connection each time, so the kernel spreads them
            with httpx.Client(base_url=server.url, timeout=10) as client:
                assert client.post(f"/v1/models/{CLASSIFIER}:classify", content=png).status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = v2_grpc.GRPCInferenceServiceStub(channel)
            tensor = v2_pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(png)
            for _ in range(REQUESTS // 2):
                stub.ModelInfer(v2_pb.ModelInferRequest(model_name=CLASSIFIER, inputs=[tensor]), timeout=10)
            refused = None
            try:
                stub.RepositoryModelUnload(v2_pb.RepositoryModelUnloadRequest(model_name=CLASSIFIER), timeout=10)
            except grpc.RpcError as error:
                refused = error.code()
        # Metrics and V2 statistics count every worker's requests, whichever worker answers.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert requests_total(client.get("/metrics").text) == REQUESTS
            unload = client.post(f"/v2/repository/models/{CLASSIFIER}/unload")
        client_v2 = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            deadline_stats = _eventually_all(client_v2)
        finally:
            client_v2.close()
        server.terminate()
        exit_code = server.wait()
        log = server.log()
    assert refused == grpc.StatusCode.PERMISSION_DENIED
    assert unload.status_code == 403 and "worker" in unload.json()["error"]
    assert deadline_stats == REQUESTS
    assert exit_code == 0, log
    assert log.count("closed: core released") == 2, log


def _eventually_all(client: triton_grpc.InferenceServerClient) -> int:
    """Snapshots travel between workers a few times a second: wait until the sum has caught up."""
    deadline = time.monotonic() + 10
    count = 0
    while time.monotonic() < deadline:
        stats = client.get_inference_statistics(CLASSIFIER, as_json=True)["model_stats"][0]
        count = int(stats["inference_stats"]["success"]["count"])
        compute = {int(stats["inference_stats"][k]["count"]) for k in ("compute_input", "compute_infer")}
        assert compute == {count}
        if count == REQUESTS:
            return count
        time.sleep(0.2)
    return count


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_workers_drain_and_exit_when_the_supervisor_is_killed(model_repository: Path, tmp_path: Path) -> None:
    """No orphans serving on the ports after a SIGKILL of the supervisor (an OOM kill, a CI timeout)."""
    with server_process(model_repository, tmp_path / "server.log", "--workers", "2") as server:
        workers = children(server.process.pid)
        assert len(workers) == 2
        started = time.monotonic() + 30  # ready on the port means one worker is; wait for both
        while server.log().count("ready: ") < 2 and time.monotonic() < started:
            time.sleep(0.1)
        assert server.log().count("ready: ") == 2, server.log()
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), server.log()
        log = server.log()
    assert log.count("closed: core released") == 2, log  # each drained, not killed
