"""Every bad input is the client's error: 4xx over REST, INVALID_ARGUMENT (or NOT_FOUND) over gRPC, never
5xx, INTERNAL or UNKNOWN; an unknown model is 404 / NOT_FOUND on every route that names one.

The cases are tables, all sent to one `python -m pixelserve.service` with default settings: REST as raw
request bytes (headers and paths go out exactly as written, UTF-8 digits included), gRPC through the
generated stubs, or as raw bytes on every method for undecodable messages. Every wrong answer of a table is
reported in one assertion message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.grpc.server import HEALTH_SERVICE, TASK_SERVICE, V2_SERVICE
from tests.service.abuse_support import exchange, request_bytes, started_server
from tests.service.models import CLASSIFIER, DENOISER, encode_image, random_images
from tests.service.rest_support import ServerProcess

PNG = encode_image(random_images(1)[0])
DEEP = 10_000
NESTED = b"[" * DEEP + b"]" * DEEP
UNKNOWN = "no-such-model"
INT64_MAX = 2**63 - 1
ONE = [1, 8, 8, 1]
ZEROS = [0] * 64
INFER = f"/v2/models/{CLASSIFIER}/infer"
CLASSIFY = f"/v1/models/{CLASSIFIER}:classify"
JSON = {"Content-Type": "application/json"}
PNG_TYPE = {"Content-Type": "image/png"}
SUPERSCRIPT_TWO, ARABIC_THREE = "%C2%B2", "%D9%A3"  # '²' and '٣' in a path


@pytest.fixture(scope="module")
def server(repository_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with started_server(repository_template, tmp_path_factory.mktemp("inputs")) as process:
        yield process


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as opened:
        yield opened


# -- REST ----------------------------------------------------------------------------------------------------


def tensor_json(shape: object = ONE, data: object = ZEROS, raw: dict[str, bytes] | None = None, **fields: object):
    """A V2 JSON body with one input; `raw` fields are spliced in as JSON text as they are (deep nesting,
    numbers Python cannot write)."""
    item = {"name": "image", "datatype": "UINT8", "shape": shape, **fields}
    if data is not None:
        item["data"] = data
    text = json.dumps({"inputs": [item]}).encode()
    for key, value in (raw or {}).items():
        text = text.replace(f'"@{key}"'.encode(), value)
    return text


def binary_body(size: object, header_length: bytes | None = None) -> bytes:
    """A V2 binary request (64 zero bytes after the header) whose input claims `size` bytes; the
    Inference-Header-Content-Length header is the true one unless given, byte for byte."""
    parameters = {"binary_data_size": size}
    header = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": ONE, "parameters": parameters}]})
    body = header.encode() + bytes(64)
    length = str(len(header)).encode() if header_length is None else header_length
    head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\nInference-Header-Content-Length: " + length + b"\r\n\r\n" + body


def multipart_with(extra: bytes = b"") -> tuple[bytes, dict[str, str]]:
    """One PNG as multipart/form-data (served by FastAPI, not the fast path), with `extra` parts before it."""
    part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n' + PNG + b"\r\n"
    return extra + part + b"--b--\r\n", {"Content-Type": "multipart/form-data; boundary=b"}


MULTIPART = multipart_with()


def post(path: str, body: bytes, headers: dict[str, str] = JSON) -> bytes:
    return request_bytes("POST", path, body, headers)


def get(path: str) -> bytes:
    return request_bytes("GET", path)


BAD_REST: list[tuple[str, bytes, set[int]]] = [
    # shapes
    ("V2 shape of 65 dimensions", post(INFER, tensor_json([1] * 65, [0])), {400}),
    ("V2 shape of 9 dimensions", post(INFER, tensor_json([1] * 9, [0])), {400}),
    ("V2 shape product overflows int64", post(INFER, tensor_json([INT64_MAX, 4, 1, 1], [0])), {400}),
    ("V2 shape product over 2**96", post(INFER, tensor_json([2**32, 2**32, 2**32, 1], [0])), {400}),
    ("V2 dimension over uint64", post(INFER, tensor_json([2**70, 8, 8, 1], [0])), {400}),
    ("V2 dimension 1e400", post(INFER, tensor_json("@shape", raw={"shape": b"[1e400, 8, 8, 1]"})), {400}),
    ("V2 negative dimension", post(INFER, tensor_json([-1, 8, 8, 1])), {400}),
    ("V2 non-integer dimension", post(INFER, tensor_json([1.5, 8, 8, 1])), {400}),
    ("V2 dimension as a string", post(INFER, tensor_json(["1", 8, 8, 1])), {400}),
    ("V2 dimension as a bool", post(INFER, tensor_json([True, 8, 8, 1])), {400}),
    ("V2 shape as a string", post(INFER, tensor_json("1,8,8,1")), {400}),
    ("V2 UINT8 value 0.5", post(INFER, tensor_json(ONE, [0.5] * 64)), {400}),
    ("V2 UINT8 value 256", post(INFER, tensor_json(ONE, [256] * 64)), {400}),
    ("V2 UINT8 value -1", post(INFER, tensor_json(ONE, [-1] * 64)), {400}),
    ("V2 data of strings", post(INFER, tensor_json(ONE, ["0"] * 64)), {400}),
    # binary_data_size
    ("binary_data_size as a string", binary_body("64"), {400}),
    ("binary_data_size huge", binary_body(2**62), {400}),
    ("binary_data_size over uint64", binary_body(2**70), {400}),
    ("binary_data_size negative", binary_body(-64), {400}),
    ("binary_data_size as a float", binary_body(64.0), {400}),
    ("binary_data_size as a bool", binary_body(True), {400}),
    # Unicode digits where a number belongs
    ("V2 infer version '²'", post(f"/v2/models/{CLASSIFIER}/versions/{SUPERSCRIPT_TWO}/infer", tensor_json()), {400}),
    ("V2 infer version '٣'", post(f"/v2/models/{CLASSIFIER}/versions/{ARABIC_THREE}/infer", tensor_json()), {400}),
    ("V2 metadata version '²'", get(f"/v2/models/{CLASSIFIER}/versions/{SUPERSCRIPT_TWO}"), {400}),
    ("V2 ready version '٣'", get(f"/v2/models/{CLASSIFIER}/versions/{ARABIC_THREE}/ready"), {400}),
    ("V2 config version '²'", get(f"/v2/models/{CLASSIFIER}/versions/{SUPERSCRIPT_TWO}/config"), {400}),
    ("V2 stats version '٣'", get(f"/v2/models/{CLASSIFIER}/versions/{ARABIC_THREE}/stats"), {400}),
    (
        "task classify version '²'",
        post(f"/v1/models/{CLASSIFIER}/versions/{SUPERSCRIPT_TWO}:classify", PNG, PNG_TYPE),
        {400},
    ),
    (
        "task denoise version '٣'",
        post(f"/v1/models/{DENOISER}/versions/{ARABIC_THREE}:denoise", PNG, PNG_TYPE),
        {400},
    ),
    ("task metadata version '٣'", get(f"/v1/models/{CLASSIFIER}/versions/{ARABIC_THREE}"), {400}),
    ("task top_k '²' (fast path)", post(f"{CLASSIFY}?top_k={SUPERSCRIPT_TWO}", PNG, PNG_TYPE), {400}),
    ("task top_k '²' (FastAPI route)", post(f"{CLASSIFY}?top_k={SUPERSCRIPT_TWO}", *MULTIPART), {400}),
    (
        "task form field top_k '²'",
        post(
            CLASSIFY,
            *multipart_with(b'--b\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n' + "²".encode() + b"\r\n"),
        ),
        {400},
    ),
    ("Inference-Header-Content-Length '²'", binary_body(64, "²".encode()), {400}),
    ("Inference-Header-Content-Length '٣'", binary_body(64, "٣".encode()), {400}),
    ("Inference-Header-Content-Length '-1'", binary_body(64, b"-1"), {400}),
    ("Inference-Header-Content-Length huge", binary_body(64, b"9" * 40), {400}),
    (
        "Content-Length '²'",
        f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: ".encode() + "²".encode() + b"\r\n\r\n{}",
        {400},
    ),
    # deep nesting
    ("nested JSON on /v2/repository/index", post("/v2/repository/index", NESTED), {400}),
    ("nested JSON on repository load", post(f"/v2/repository/models/{CLASSIFIER}/load", NESTED), {400, 403}),
    ("nested JSON on repository unload", post(f"/v2/repository/models/{CLASSIFIER}/unload", NESTED), {400, 403}),
    ("nested JSON as a V2 infer body", post(INFER, NESTED), {400}),
    ("nested JSON in V2 data", post(INFER, tensor_json(ONE, "@data", raw={"data": NESTED})), {400}),
    (
        "nested JSON in V2 parameters",
        post(INFER, tensor_json(parameters="@p", raw={"p": b'{"a":' + NESTED + b"}"})),
        {400},
    ),
    (
        "nested JSON in V2 binary header",
        b"POST "
        + INFER.encode()
        + b" HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(NESTED)).encode()
        + b"\r\nInference-Header-Content-Length: "
        + str(len(NESTED)).encode()
        + b"\r\n\r\n"
        + NESTED,
        {400},
    ),
    ("nested JSON on task classify", post(CLASSIFY, b'{"images":' + NESTED + b"}"), {400}),
    (
        "nested JSON on task classify (FastAPI route)",
        post(f"/v1/models/{DENOISER}:denoise", b'{"images":' + NESTED + b"}"),
        {400},
    ),
]

UNKNOWN_REST: list[tuple[str, bytes, set[int]]] = [
    (f"GET /v2/models/{UNKNOWN}", get(f"/v2/models/{UNKNOWN}"), {404}),
    (f"GET /v2/models/{UNKNOWN}/ready", get(f"/v2/models/{UNKNOWN}/ready"), {404}),
    (f"GET /v2/models/{UNKNOWN}/config", get(f"/v2/models/{UNKNOWN}/config"), {404}),
    (f"GET /v2/models/{UNKNOWN}/stats", get(f"/v2/models/{UNKNOWN}/stats"), {404}),
    (f"POST /v2/models/{UNKNOWN}/infer", post(f"/v2/models/{UNKNOWN}/infer", tensor_json()), {404}),
    (f"GET /v2/models/{UNKNOWN}/versions/1/ready", get(f"/v2/models/{UNKNOWN}/versions/1/ready"), {404}),
    (f"GET /v2/models/{CLASSIFIER}/versions/7", get(f"/v2/models/{CLASSIFIER}/versions/7"), {404}),
    (f"GET /v2/models/{CLASSIFIER}/versions/7/ready", get(f"/v2/models/{CLASSIFIER}/versions/7/ready"), {404}),
    (f"GET /v2/models/{CLASSIFIER}/versions/7/config", get(f"/v2/models/{CLASSIFIER}/versions/7/config"), {404}),
    (f"GET /v2/models/{CLASSIFIER}/versions/7/stats", get(f"/v2/models/{CLASSIFIER}/versions/7/stats"), {404}),
    (
        f"POST /v2/models/{CLASSIFIER}/versions/7/infer",
        post(f"/v2/models/{CLASSIFIER}/versions/7/infer", tensor_json()),
        {404},
    ),
    ("GET /v2/models/%2e%2e/ready", get("/v2/models/%2e%2e/ready"), {404}),
    (f"GET /v1/models/{UNKNOWN}", get(f"/v1/models/{UNKNOWN}"), {404}),
    (f"GET /v1/models/{CLASSIFIER}/versions/7", get(f"/v1/models/{CLASSIFIER}/versions/7"), {404}),
    (f"POST /v1/models/{UNKNOWN}:classify (fast path)", post(f"/v1/models/{UNKNOWN}:classify", PNG, PNG_TYPE), {404}),
    (f"POST /v1/models/{UNKNOWN}:classify (multipart)", post(f"/v1/models/{UNKNOWN}:classify", *MULTIPART), {404}),
    (
        f"POST /v1/models/{CLASSIFIER}/versions/7:classify",
        post(f"/v1/models/{CLASSIFIER}/versions/7:classify", PNG, PNG_TYPE),
        {404},
    ),
    (f"POST /v1/models/{UNKNOWN}:denoise", post(f"/v1/models/{UNKNOWN}:denoise", PNG, PNG_TYPE), {404}),
    (f"POST /v1/models/{UNKNOWN}:reconstruct", post(f"/v1/models/{UNKNOWN}:reconstruct", PNG, PNG_TYPE), {404}),
    (f"POST /v1/models/{UNKNOWN}:encode", post(f"/v1/models/{UNKNOWN}:encode", PNG, PNG_TYPE), {404}),
]


def wrong_rest(server: ServerProcess, cases: list[tuple[str, bytes, set[int]]]) -> list[str]:
    wrong = []
    for name, raw, expected in cases:
        try:
            reply = exchange(server.http_port, raw, timeout_s=20)
        except OSError as exc:
            wrong.append(f"{name}: no answer ({type(exc).__name__}: {exc})")
            continue
        if reply.status not in expected:
            wrong.append(f"{name}: {reply.status} (expected {sorted(expected)}) {reply.body[:160]!r}")
    return wrong


def test_bad_rest_inputs_are_4xx(server: ServerProcess) -> None:
    wrong = wrong_rest(server, BAD_REST)
    assert not wrong, f"{len(wrong)} of {len(BAD_REST)} wrong:\n" + "\n".join(wrong)
    assert "Traceback" not in server.log(), server.log()[-3000:]


def test_unknown_models_are_404_on_every_rest_route(server: ServerProcess) -> None:
    wrong = wrong_rest(server, UNKNOWN_REST)
    assert not wrong, f"{len(wrong)} of {len(UNKNOWN_REST)} wrong:\n" + "\n".join(wrong)


# -- gRPC ----------------------------------------------------------------------------------------------------

Call = Callable[[grpc.Channel], object]


def v2_infer(shape: list[int], version: str = "", model: str = CLASSIFIER, raw: bytes | None = None) -> Call:
    contents = v2_pb.InferTensorContents(uint_contents=ZEROS if raw is None else [])
    tensor = v2_pb.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=shape, contents=contents)
    request = v2_pb.ModelInferRequest(
        model_name=model, model_version=version, inputs=[tensor], raw_input_contents=[] if raw is None else [raw]
    )
    return lambda ch: v2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(request, timeout=20)


def task_tensor(shape: list[int], data: bytes = bytes(64)) -> Call:
    tensor = pb.Tensor(dtype=pb.Tensor.DATA_TYPE_UINT8, shape=shape, data=data)
    request = pb.ClassifyRequest(model=CLASSIFIER, inputs=pb.ImageBatch(batch=tensor))
    return lambda ch: pb_grpc.PixelServeStub(ch).Classify(request, timeout=20)


def v2(method: str, message: object) -> Call:
    return lambda ch: getattr(v2_grpc.GRPCInferenceServiceStub(ch), method)(message, timeout=20)


def task(method: str, message: object) -> Call:
    return lambda ch: getattr(pb_grpc.PixelServeStub(ch), method)(message, timeout=20)


def images(model: str, version: int = 0) -> dict[str, object]:
    return {"model": model, "version": version, "inputs": pb.ImageBatch(images=[pb.Image(encoded=PNG)])}


INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND

BAD_GRPC: list[tuple[str, Call, grpc.StatusCode]] = [
    ("V2 shape of 65 dimensions", v2_infer([1] * 65, raw=bytes(1)), INVALID),
    ("V2 shape product overflows int64", v2_infer([INT64_MAX, 4, 1, 1], raw=bytes(1)), INVALID),
    ("V2 shape of int64 extremes", v2_infer([-(2**63), 2**63 - 1], raw=bytes(1)), INVALID),
    ("V2 negative dimension", v2_infer([-1, 8, 8, 1]), INVALID),
    ("V2 infer version '²'", v2_infer(ONE, version="²"), INVALID),
    ("V2 infer version '٣'", v2_infer(ONE, version="٣"), INVALID),
    ("V2 metadata version '²'", v2("ModelMetadata", v2_pb.ModelMetadataRequest(name=CLASSIFIER, version="²")), INVALID),
    ("V2 ready version '٣'", v2("ModelReady", v2_pb.ModelReadyRequest(name=CLASSIFIER, version="٣")), INVALID),
    ("V2 config version '²'", v2("ModelConfig", v2_pb.ModelConfigRequest(name=CLASSIFIER, version="²")), INVALID),
    (
        "V2 statistics version '٣'",
        v2("ModelStatistics", v2_pb.ModelStatisticsRequest(name=CLASSIFIER, version="٣")),
        INVALID,
    ),
    ("task tensor of 65 dimensions", task_tensor([1] * 65), INVALID),
    ("task tensor shape product overflows int64", task_tensor([INT64_MAX, 4, 1, 1]), INVALID),
    ("task tensor negative dimension", task_tensor([-1, 8, 8, 1]), INVALID),
    ("task tensor zero dimension", task_tensor([0, 8, 8, 1], b""), INVALID),
]

UNKNOWN_GRPC: list[tuple[str, Call, grpc.StatusCode]] = [
    ("V2 ModelReady", v2("ModelReady", v2_pb.ModelReadyRequest(name=UNKNOWN)), NOT_FOUND),
    (
        "V2 ModelReady, unknown version",
        v2("ModelReady", v2_pb.ModelReadyRequest(name=CLASSIFIER, version="7")),
        NOT_FOUND,
    ),
    ("V2 ModelMetadata", v2("ModelMetadata", v2_pb.ModelMetadataRequest(name=UNKNOWN)), NOT_FOUND),
    ("V2 ModelConfig", v2("ModelConfig", v2_pb.ModelConfigRequest(name=UNKNOWN)), NOT_FOUND),
    ("V2 ModelStatistics", v2("ModelStatistics", v2_pb.ModelStatisticsRequest(name=UNKNOWN)), NOT_FOUND),
    ("V2 ModelInfer", v2_infer(ONE, model=UNKNOWN), NOT_FOUND),
    ("V2 ModelInfer, unknown version", v2_infer(ONE, version="7"), NOT_FOUND),
    ("task Classify", task("Classify", pb.ClassifyRequest(**images(UNKNOWN))), NOT_FOUND),
    ("task Classify, unknown version", task("Classify", pb.ClassifyRequest(**images(CLASSIFIER, 7))), NOT_FOUND),
    ("task Denoise", task("Denoise", pb.DenoiseRequest(**images(UNKNOWN))), NOT_FOUND),
    ("task Reconstruct", task("Reconstruct", pb.ReconstructRequest(**images(UNKNOWN))), NOT_FOUND),
    ("task Encode", task("Encode", pb.EncodeRequest(**images(UNKNOWN))), NOT_FOUND),
    ("task GetModel", task("GetModel", pb.GetModelRequest(model=UNKNOWN)), NOT_FOUND),
    ("task GetModel, unknown version", task("GetModel", pb.GetModelRequest(model=CLASSIFIER, version=7)), NOT_FOUND),
    (
        "health Check of an unknown service",
        lambda ch: health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=20
        ),
        NOT_FOUND,
    ),
]


def wrong_grpc(channel: grpc.Channel, cases: list[tuple[str, Call, grpc.StatusCode]]) -> list[str]:
    wrong = []
    for name, call, expected in cases:
        try:
            call(channel)
        except grpc.RpcError as error:
            if error.code() != expected:
                wrong.append(f"{name}: {error.code().name} (expected {expected.name}) {error.details()!r}")
            elif not error.details() or "Error" in error.details():
                wrong.append(f"{name}: {expected.name} without a plain message: {error.details()!r}")
        else:
            wrong.append(f"{name}: succeeded (expected {expected.name})")
    return wrong


def test_bad_grpc_inputs_are_invalid_argument(channel: grpc.Channel) -> None:
    wrong = wrong_grpc(channel, BAD_GRPC)
    assert not wrong, f"{len(wrong)} of {len(BAD_GRPC)} wrong:\n" + "\n".join(wrong)


def test_unknown_models_are_not_found_on_every_grpc_method(channel: grpc.Channel) -> None:
    wrong = wrong_grpc(channel, UNKNOWN_GRPC)
    assert not wrong, f"{len(wrong)} of {len(UNKNOWN_GRPC)} wrong:\n" + "\n".join(wrong)


CORRUPT = b"\xff" * 12  # a varint longer than ten bytes: no protobuf message parses it


def test_undecodable_protobuf_is_invalid_argument_on_every_method(channel: grpc.Channel) -> None:
    """Raw bytes on every method of both services and health, each kind of call (unary, server streaming,
    bidirectional streaming) as the service declares it."""
    services = {
        TASK_SERVICE: pb.DESCRIPTOR.services_by_name["PixelServe"],
        V2_SERVICE: v2_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
        HEALTH_SERVICE: health_pb2.DESCRIPTOR.services_by_name["Health"],
    }
    wrong, kinds = [], set()
    for service, descriptor in services.items():
        for method in descriptor.methods:
            path = f"/{service}/{method.name}"
            kind = (method.client_streaming, method.server_streaming)
            kinds.add(kind)
            try:
                if kind == (False, False):
                    channel.unary_unary(path)(CORRUPT, timeout=20)
                elif kind == (False, True):
                    list(channel.unary_stream(path)(CORRUPT, timeout=20))
                elif kind == (True, True):
                    list(channel.stream_stream(path)(iter([CORRUPT]), timeout=20))
                else:
                    channel.stream_unary(path)(iter([CORRUPT]), timeout=20)
            except grpc.RpcError as error:
                if error.code() != INVALID or "DecodeError" in (error.details() or ""):
                    wrong.append(f"{path}: {error.code().name} {error.details()!r}")
            else:
                wrong.append(f"{path}: answered a corrupt message")
    assert kinds >= {(False, False), (False, True), (True, True)}, kinds
    assert not wrong, f"{len(wrong)} wrong:\n" + "\n".join(wrong)
