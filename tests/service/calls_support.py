"""The server and the clients of the call matrix (test_abuse_calls*.py): a whole `python -m pixelserve.service`
with every operations feature on, the checks that it still serves, every RPC it serves as raw request bytes,
and REST uploads with large answers. (The bare HTTP/2 client is in h2_support.py.)

Every gRPC call goes out with identity serializers (bytes in, bytes out): one code path calls every RPC, and
it can send what no generated stub would.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from PIL import Image

from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from tests.service.abuse_support import metric_value, multipart, one_bit_png, request_bytes
from tests.service.models import (
    AUTOENCODER,
    CLASSIFIER,
    DENOISER,
    LABELS,
    add_drift_baseline,
    encode_image,
    random_images,
    reference_session,
)
from tests.service.rest_support import ServerProcess

TASK = "pixelserve.v1.PixelServe"
V2 = "inference.GRPCInferenceService"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
# Every operations feature at once: access log, tracing (console exporter: no collector needed), payload
# logging of every request, drift scored from the first image and refreshed often.
FEATURES = (
    "--access-log", "true",
    "--tracing", "true",
    "--payload-log-rate", "1",
    "--payload-log-shard-rows", "200",
    "--drift-monitoring", "true",
    "--drift-min-samples", "1",
    "--drift-refresh-s", "0.2",
)  # fmt: skip
FEATURE_ENV = {"OTEL_TRACES_EXPORTER": "console", "PYTHONFAULTHANDLER": "1"}
IN_FLIGHT = "pixelserve_in_flight_requests"
DENIED = grpc.StatusCode.PERMISSION_DENIED
CALL_TIMEOUT_S = 30.0  # no call of the matrix may take longer than this
# A length-delimited field 1 that claims 2**32 - 1 bytes and brings 12: no message type parses it.
UNDECODABLE = b"\x0a\xff\xff\xff\xff\x0f" + b"not protobuf"


# -- the server ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownImage:
    """An image and the label the tiny classifier gives it, from an in-process session on the same file."""

    png: bytes
    label: str

    @classmethod
    def of(cls, repository: Path) -> KnownImage:
        images = random_images(8, seed=11)
        (probabilities,) = reference_session(repository, CLASSIFIER).run(None, {"image": images})
        labels = [LABELS[i] for i in probabilities.argmax(axis=1)]
        pick = labels.index(next(label for label in LABELS[1:] if label in labels))  # not the first class
        return cls(encode_image(images[pick]), labels[pick])


class FeaturedServer:
    """One server process for a module, every operations feature on, with a private copy of the test models
    (drift baselines added); started again when a case killed it, so the cases after a crash still run."""

    def __init__(self, template: Path, where: Path) -> None:
        self.where = where
        self.repository = Path(shutil.copytree(template, where / "models"))
        baseline = random_images(64, seed=3)
        add_drift_baseline(self.repository, AUTOENCODER, baseline)
        add_drift_baseline(self.repository, CLASSIFIER, baseline)
        self.known = KnownImage.of(self.repository)
        self.starts = 0
        self.process = self._start()

    def _start(self) -> ServerProcess:
        self.starts += 1
        run = self.where / f"run-{self.starts}"
        run.mkdir()
        args = (*FEATURES, "--payload-log-dir", str(run / "payloads"))
        server = ServerProcess(self.repository, run / "server.log", *args, env=FEATURE_ENV)
        try:
            server.wait_ready(timeout_s=60)
        except BaseException:
            server.close()
            raise
        return server

    def serving(self) -> ServerProcess:
        """The live process, a fresh one if the last case killed it."""
        if self.process.process.poll() is not None:
            self.process.close()
            self.process = self._start()
        return self.process

    def close(self) -> None:
        self.process.close()


def log_tail(server: ServerProcess, size: int = 6000) -> str:
    """The end of the server's log (console spans make the whole of it large); after a fatal signal, the
    crashing thread's stack first (faulthandler lists every other thread before it)."""
    with server.log_path.open("rb") as log:
        log.seek(max(0, server.log_path.stat().st_size - 50 * size))
        text = log.read().decode(errors="replace")
    crashed = text.rfind("Current thread")
    head = text[crashed : crashed + size // 2] + "\n...\n" if crashed >= 0 else ""
    return head + text[-size:]


def assert_alive(server: ServerProcess, when: str = "", grace_s: float = 0.0) -> None:
    """`grace_s`: how long a process that is going down (a client just saw its connection reset; faulthandler
    may still be writing) gets to finish dying before it counts as alive."""
    try:
        code = server.process.wait(timeout=grace_s) if grace_s else server.process.poll()
    except subprocess.TimeoutExpired:
        code = None
    assert code is None, f"the server died {when} (exit code {code}):\n{log_tail(server)}"


def access_entries(server: ServerProcess, since: int) -> list[dict]:
    """The access-log entries written after byte `since` of the server's log."""
    with server.log_path.open("rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith('{"time"') and line.endswith("}")]


def logged(server: ServerProcess, since: int, request_id: str, timeout_s: float = 10.0) -> dict:
    """The access-log entry of `request_id`, once the writer (off the request path) has written it: every
    entry queued before it is written by then too."""
    found: list[dict] = []

    def written() -> bool:
        found[:] = [e for e in access_entries(server, since) if e.get("request_id") == request_id]
        return bool(found)

    wait_until(written, timeout_s, f"logged {request_id}", poll_s=0.02)
    return found[0]


def grpc_in_flight(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return metric_value(text, IN_FLIGHT, protocol="grpc")


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout_s}s"
        time.sleep(poll_s)


def assert_serving(server: ServerProcess, known: KnownImage, request_id: str) -> None:
    """Alive, nothing left in flight on gRPC, and a real classify answers the right label over REST and gRPC
    (sent as `request_id`-rest and `request_id`-grpc)."""
    assert_alive(server)
    wait_until(lambda: grpc_in_flight(server) == 0, 15, "back to 0 gRPC requests in flight")
    headers = {"Content-Type": "image/png", "x-request-id": f"{request_id}-rest"}
    rest = httpx.post(f"{server.url}/v1/models/{CLASSIFIER}:classify", content=known.png, headers=headers, timeout=15)
    assert rest.status_code == 200, rest.text[:500]
    assert rest.json()["results"][0]["top"][0]["label"] == known.label, rest.text[:500]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        request = pb.ClassifyRequest(model=CLASSIFIER, inputs=pb.ImageBatch(images=[pb.Image(encoded=known.png)]))
        answer = pb_grpc.PixelServeStub(channel).Classify(
            request, timeout=15, metadata=(("x-request-id", f"{request_id}-grpc"),)
        )
    assert answer.results[0].top[0].label == known.label, answer


@dataclass
class Case:
    """One case of the matrix against the module's server; `since`: the log's size when the case began."""

    server: ServerProcess
    featured: FeaturedServer
    since: int

    @classmethod
    def begin(cls, featured: FeaturedServer) -> Case:
        server = featured.serving()
        return cls(server, featured, server.log_path.stat().st_size)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.server.grpc_port}")

    def still_serving(self) -> None:
        """Alive, back to nothing in flight, right answers on both transports, and no request of the case
        answered with a server fault (a 5xx sent, INTERNAL or DATA_LOSS)."""
        check = f"check-{next(_CHECKS)}"
        assert_serving(self.server, self.featured.known, check)
        logged(self.server, self.since, f"{check}-grpc")  # the case's entries are all written by now
        faults = [e for e in access_entries(self.server, self.since) if e.get("code") in ("INTERNAL", "DATA_LOSS")
                  or (int(e.get("status") or 0) >= 500 and e.get("bytes_out"))]  # fmt: skip
        assert not faults, f"server faults in the access log: {faults}"


_CHECKS = itertools.count()


# -- every RPC as bytes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    """One method: a request it answers at once, and one that keeps the server busy for a few hundred ms
    (the same where no request can); `tracked` methods show in the in-flight gauge while the server works."""

    service: str
    name: str
    light: bytes
    heavy: bytes
    kind: str = "unary"  # unary, server_stream or bidi
    tracked: bool = False
    answer_code: grpc.StatusCode = grpc.StatusCode.OK  # what a valid request gets
    garbage_code: grpc.StatusCode | None = grpc.StatusCode.INVALID_ARGUMENT  # an undecodable one; None: any error

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def id(self) -> str:
        return f"{self.service.rpartition('.')[2]}.{self.name}"

    def callable(self, channel: grpc.Channel) -> Callable:
        factory = {"unary": channel.unary_unary, "server_stream": channel.unary_stream, "bidi": channel.stream_stream}
        return factory[self.kind](self.path)


def _images(batch: list[bytes], **options: object) -> pb.ImageBatch:
    return pb.ImageBatch(images=[pb.Image(encoded=data) for data in batch], **options)


def _v2_infer(model: str, encoded: list[bytes]) -> bytes:
    """A V2 request with the images as encoded BYTES elements (4-byte length prefixed, raw contents)."""
    raw = b"".join(struct.pack("<I", len(data)) + data for data in encoded)
    tensor = v2_pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[len(encoded)])
    return v2_pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[raw]).SerializeToString()


def catalogue() -> list[Rpc]:
    """Every RPC of the task API and V2, plus health and reflection on the same port."""
    small = [encode_image(random_images(1, seed=5)[0])]
    big = [one_bit_png(2048)] * 24  # a few hundred bytes each on the wire, 4 Mpixel each to decode and resize

    def task(name: str, message: type[Message], model: str, kind: str = "unary", **fields: object) -> Rpc:
        light = message(model=model, inputs=_images(small), **fields).SerializeToString()
        heavy = message(model=model, inputs=_images(big), **fields).SerializeToString()
        return Rpc(TASK, name, light, heavy, kind, tracked=True)

    def plain(service: str, name: str, request: Message, kind: str = "unary", **extra: object) -> Rpc:
        data = request.SerializeToString()
        return Rpc(service, name, data, data, kind, **extra)  # type: ignore[arg-type]

    model = v2_pb.ModelReadyRequest(name=CLASSIFIER)
    control, unload = v2_pb.RepositoryModelLoadRequest, v2_pb.RepositoryModelUnloadRequest
    reflect = reflection_pb2.ServerReflectionRequest(list_services="")
    return [
        task("Classify", pb.ClassifyRequest, CLASSIFIER),
        task("ClassifyStream", pb.ClassifyRequest, CLASSIFIER, "bidi"),
        task("Denoise", pb.DenoiseRequest, DENOISER, return_tensor=True),
        task("Reconstruct", pb.ReconstructRequest, AUTOENCODER, return_tensor=True),
        task("Encode", pb.EncodeRequest, AUTOENCODER),
        plain(TASK, "ListModels", pb.ListModelsRequest()),
        plain(TASK, "GetModel", pb.GetModelRequest(model=CLASSIFIER)),
        Rpc(V2, "ModelInfer", _v2_infer(CLASSIFIER, small), _v2_infer(CLASSIFIER, big), tracked=True),
        Rpc(V2, "ModelStreamInfer", _v2_infer(CLASSIFIER, small), _v2_infer(CLASSIFIER, big), "bidi", tracked=True),
        plain(V2, "ServerLive", v2_pb.ServerLiveRequest()),
        plain(V2, "ServerReady", v2_pb.ServerReadyRequest()),
        plain(V2, "ModelReady", model),
        plain(V2, "ServerMetadata", v2_pb.ServerMetadataRequest()),
        plain(V2, "ModelMetadata", v2_pb.ModelMetadataRequest(name=CLASSIFIER)),
        plain(V2, "ModelConfig", v2_pb.ModelConfigRequest(name=CLASSIFIER)),
        plain(V2, "ModelStatistics", v2_pb.ModelStatisticsRequest()),
        plain(V2, "RepositoryIndex", v2_pb.RepositoryIndexRequest()),
        # Repository control is off (the default): both are refused, which is what a hostile client gets.
        plain(V2, "RepositoryModelLoad", control(model_name=CLASSIFIER), answer_code=DENIED),
        plain(V2, "RepositoryModelUnload", unload(model_name=CLASSIFIER), answer_code=DENIED),
        plain(HEALTH, "Check", health_pb2.HealthCheckRequest()),
        plain(HEALTH, "Watch", health_pb2.HealthCheckRequest(), "server_stream"),
        # Reflection is grpcio's own servicer, not guarded: an undecodable message ends it with grpc's own code.
        plain(REFLECTION, "ServerReflectionInfo", reflect, "bidi", garbage_code=None),
    ]


# -- calling ---------------------------------------------------------------------------------------------------


def code_of(run: Callable[[], object]) -> grpc.StatusCode:
    try:
        run()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def held_open(messages: list[bytes], done: threading.Event) -> Iterator[bytes]:
    """A request stream that sends `messages` and then stays open (no half-close) until `done`."""
    yield from messages
    done.wait(CALL_TIMEOUT_S)


@contextlib.contextmanager
def stream_call(case: Case, rpc: Rpc, messages: list[bytes], **kwargs: Any) -> Iterator[Any]:
    """A streaming call (server-streaming: of the first message) whose request stream stays open while inside."""
    done = threading.Event()
    with case.channel() as channel:
        call = rpc.callable(channel)
        try:
            yield (
                call(messages[0], **kwargs)
                if rpc.kind == "server_stream"
                else call(held_open(messages, done), **kwargs)
            )
        finally:
            done.set()


def cancel_after_answers(case: Case, rpc: Rpc, sent: int = 400, read: int = 40, **kwargs: Any) -> None:
    """The client that once crashed the server: `sent` messages on a bidi stream, `read` answers, cancel."""
    with stream_call(case, rpc, [rpc.light] * sent, timeout=CALL_TIMEOUT_S, **kwargs) as call:
        try:
            for _ in range(read):
                next(call)
        except grpc.RpcError:
            assert_alive(case.server, "under the stream", grace_s=5)
            raise
        call.cancel()


# -- REST uploads ----------------------------------------------------------------------------------------------


def noise_png(side: int = 512) -> bytes:
    """Random pixels compress to nothing: a PNG of side*side bytes, large on the wire."""
    pixels = np.random.default_rng(1).integers(0, 256, (side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def v2_json(count: int) -> bytes:
    tensor = {"name": "image", "datatype": "UINT8", "shape": [count, 8, 8, 1], "data": [7] * (count * 64)}
    return json.dumps({"inputs": [tensor]}).encode()


def uploads() -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """(path, body, headers) of requests on the hot routes (V2 infer, raw-body classify) and multipart ones,
    large on the wire or with a large answer."""
    small = [encode_image(image) for image in random_images(256, seed=9)]
    form, form_type = multipart(small)
    big, big_type = multipart([noise_png()])
    return {
        "v2-infer": (f"/v2/models/{AUTOENCODER}/infer", v2_json(256), {"Content-Type": "application/json"}),
        "classify-raw": (f"/v1/models/{CLASSIFIER}:classify", noise_png(), {"Content-Type": "image/png"}),
        "denoise-multipart": (f"/v1/models/{DENOISER}:denoise?return_input=true", form, {"Content-Type": form_type}),
        "classify-multipart": (f"/v1/models/{CLASSIFIER}:classify", big, {"Content-Type": big_type}),
    }


def send_part_and_leave(port: int, path: str, body: bytes, headers: dict[str, str]) -> None:
    """Headers that promise the whole body, a third of it, then the client closes."""
    head = request_bytes("POST", path, body, headers)[: -len(body)]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 3])
