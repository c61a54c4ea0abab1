"""Real-world images through the real server and the committed models: scans, printed digits, phone photos.

Each variant is made in code from the real test split (pixelserve.training.variants) and sent as files a
client would upload, over REST (and, for the override, gRPC and V2 too). The floors are issue 11's: dark-on-
paper MNIST scans >= 97%, printed digits >= 90%, EXIF-rotated CIFAR-10 JPEGs within 2 points of unrotated, and
plain MNIST test PNGs answered exactly as the graph answers their raw pixels.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from pixelserve.service.grpc.gen.inference import grpc_service_pb2 as v2_pb
from pixelserve.service.grpc.gen.inference import grpc_service_pb2_grpc as v2_grpc
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.settings import Settings
from pixelserve.service.wiring import build_core
from pixelserve.training import variants
from pixelserve.training.data import load_dataset
from tests.prerequisites import require
from tests.service.grpc_support import grpc_server
from tests.service.rest_support import rest_server

COMMITTED = Path(__file__).resolve().parents[2] / "models"
MNIST, CIFAR = "mnist-classifier", "cifar10-classifier"
COUNT = 300  # per variant: enough for the floors to mean something, small enough for CI
PER_REQUEST = 50


@dataclass
class Servers:
    http: httpx.AsyncClient
    channel: grpc.aio.Channel


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    data_dir = Path(os.environ.get("PIXELSERVE_DATA_DIR", COMMITTED.parents[1] / "shared" / "datasets"))
    require((data_dir / "mnist.npz").exists(), f"real datasets not found in {data_dir}")
    mnist, cifar = load_dataset("mnist", data_dir), load_dataset("cifar10", data_dir)
    return {"mnist": (mnist.x_test, mnist.y_test), "cifar10": (cifar.x_test, cifar.y_test)}


@pytest.fixture
async def servers(settings: Settings, metrics: Metrics) -> AsyncIterator[Servers]:
    # No warm-up batches and no golden-set gate (8 s of start-up per test on 2 cores): what these tests check is
    # the answers, and test_quality_gate / test_verify check the gate on the same models.
    committed = settings.model_copy(
        update={"model_repository": COMMITTED, "max_batch_size": 64, "max_queue_size": 1024, "max_batch_images": 1024,
                "warmup": False, "quality_gate": False}
    )  # fmt: skip
    core = await build_core(committed, metrics)
    try:
        async with (
            rest_server(core, committed, metrics) as url,
            grpc_server(core, committed, metrics) as address,
            httpx.AsyncClient(base_url=url, timeout=60) as http,
            grpc.aio.insecure_channel(address) as channel,
        ):
            yield Servers(http, channel)
    finally:
        await core.close()


async def classify(http: httpx.AsyncClient, model: str, files: list[bytes], **params: str) -> list[dict]:
    """Top-1 results for every file, PER_REQUEST files per multipart request."""
    results: list[dict] = []
    for start in range(0, len(files), PER_REQUEST):
        chunk = files[start : start + PER_REQUEST]
        upload = [("files", (f"{i}", data, "application/octet-stream")) for i, data in enumerate(chunk)]
        response = await http.post(f"/v1/models/{model}:classify", files=upload, params={"top_k": "1", **params})
        assert response.status_code == 200, response.text
        body = response.json()
        results += [{**r, "prepared": body["prepared"]} for r in body["results"]]
    return results


def accuracy(results: list[dict], labels: np.ndarray) -> float:
    return float(np.mean([r["top"][0]["index"] == int(y) for r, y in zip(results, labels, strict=True)]))


@pytest.mark.slow
async def test_dark_digits_on_paper_classify_like_test_images(servers: Servers, data) -> None:
    x, y = data["mnist"]
    for make, floor in ((variants.mnist_paper, 0.97), (variants.mnist_grey_paper_jpeg, 0.97)):
        variant = make(x, y, COUNT, 0)
        results = await classify(servers.http, MNIST, variant.images)
        assert results[0]["prepared"] == {"resize": "none", "normalize": "digit", "inputs": []}
        assert accuracy(results, variant.labels) >= floor, variant.name
        raw = await classify(servers.http, MNIST, variant.images, normalize="none")
        assert accuracy(raw, variant.labels) < 0.5, "without the normalisation these are foreign images"


@pytest.mark.slow
async def test_printed_digits_classify(servers: Servers) -> None:
    require(bool(variants.font_files()), "no DejaVu fonts (Debian fonts-dejavu-core)")
    variant = variants.printed_digits(seed=0)
    assert accuracy(await classify(servers.http, MNIST, variant.images), variant.labels) >= 0.90


@pytest.mark.slow
async def test_plain_mnist_pngs_are_answered_as_their_raw_pixels(servers: Servers, data) -> None:
    """Digit normalisation leaves MNIST-format input alone: the PNG path answers what the graph answers."""
    x, y = data["mnist"]
    variant = variants.plain("mnist-png", x, y, COUNT, 1)
    served = await classify(servers.http, MNIST, variant.images)
    rows = x[variant.indices]
    tensor = await servers.http.post(
        f"/v2/models/{MNIST}/infer",
        json={
            "inputs": [{"name": "image", "shape": list(rows.shape), "datatype": "UINT8", "data": rows.ravel().tolist()}]
        },
    )
    probabilities = np.asarray(tensor.json()["outputs"][0]["data"]).reshape(len(rows), -1)
    assert [r["top"][0]["index"] for r in served] == probabilities.argmax(axis=1).tolist()
    np.testing.assert_allclose([r["top"][0]["probability"] for r in served], probabilities.max(axis=1), atol=1e-6)


@pytest.mark.slow
async def test_exif_rotated_photos_score_as_upright_ones(servers: Servers, data) -> None:
    x, y = data["cifar10"]
    rotated = variants.cifar_exif_rotated(x, y, COUNT, 2)
    upright = variants.plain("cifar-jpeg", x[rotated.indices], y[rotated.indices], COUNT, 0, jpeg_quality=90)
    upright_acc = accuracy(await classify(servers.http, CIFAR, upright.images), upright.labels)
    rotated_acc = accuracy(await classify(servers.http, CIFAR, rotated.images), rotated.labels)
    assert rotated_acc >= upright_acc - 0.02, (rotated_acc, upright_acc)


@pytest.mark.slow
async def test_four_by_three_photos_are_centre_cropped_by_default(servers: Servers, data) -> None:
    x, y = data["cifar10"]
    photos = variants.cifar_photo_4x3(x, y, COUNT, 3)
    cropped = await classify(servers.http, CIFAR, photos.images)
    stretched = await classify(servers.http, CIFAR, photos.images, resize="stretch")
    assert cropped[0]["prepared"]["resize"] == "center-crop" and stretched[0]["prepared"]["resize"] == "stretch"
    assert accuracy(cropped, photos.labels) > accuracy(stretched, photos.labels)


def png_with_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    image = variants.stored_for_orientation(Image.fromarray(pixels), orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif.tobytes())
    return buffer.getvalue()


async def test_every_exif_orientation_reaches_the_model_upright(servers: Servers) -> None:
    """What the model saw (return_input) is the same upright image for EXIF orientations 1 to 8."""
    pixels = np.random.default_rng(4).integers(0, 256, (32, 24, 3), dtype=np.uint8)  # not square: turns show
    seen = []
    for orientation in range(1, 9):
        data = png_with_orientation(pixels, orientation)
        response = await servers.http.post(f"/v1/models/{CIFAR}:classify", content=data,
                                           params={"return_input": "true", "resize": "stretch"})  # fmt: skip
        assert response.status_code == 200, response.text
        (png,) = response.json()["prepared"]["inputs"]
        seen.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(png)))))
    for image in seen[1:]:
        np.testing.assert_array_equal(image, seen[0])


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((40, 40), np.uint8),
        np.full((40, 40), 255, np.uint8),
        np.full((1, 1), 9, np.uint8),
        np.full((1, 300), 200, np.uint8),
    ],
    ids=["blank", "all-white", "one-pixel", "one-row"],
)
async def test_degenerate_images_get_a_clear_answer(servers: Servers, pixels: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    for model in (MNIST, CIFAR):
        response = await servers.http.post(f"/v1/models/{model}:classify", content=buffer.getvalue())
        assert response.status_code == 200, response.text
        assert len(response.json()["results"][0]["top"]) == 5


async def test_the_resize_override_works_and_is_checked_on_every_protocol(servers: Servers, data) -> None:
    x, y = data["cifar10"]
    photo = variants.cifar_photo_4x3(x, y, 1, 5).images[0]
    rest = await servers.http.post(f"/v1/models/{CIFAR}:classify", content=photo, params={"resize": "letterbox"})
    assert rest.json()["prepared"]["resize"] == "letterbox"
    bad_rest = await servers.http.post(f"/v1/models/{CIFAR}:classify", content=photo, params={"resize": "zoom"})
    assert bad_rest.status_code == 400 and "resize must be one of" in bad_rest.json()["error"]["message"]

    task = pb_grpc.PixelServeStub(servers.channel)
    batch = pb.ImageBatch(images=[pb.Image(encoded=photo)], resize="letterbox")
    answer = await task.Classify(pb.ClassifyRequest(model=CIFAR, inputs=batch))
    assert answer.prepared.resize == "letterbox"
    assert answer.results[0].top[0].index == rest.json()["results"][0]["top"][0]["index"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await task.Classify(pb.ClassifyRequest(model=CIFAR, inputs=pb.ImageBatch(images=batch.images, resize="zoom")))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    tensor = v2_pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(photo)
    request = v2_pb.ModelInferRequest(model_name=CIFAR, inputs=[tensor])
    request.parameters["resize"].string_param = "letterbox"
    v2 = await v2_grpc.GRPCInferenceServiceStub(servers.channel).ModelInfer(request)
    assert v2.parameters["resize"].string_param == "letterbox"
    probabilities = np.asarray(v2.outputs[0].contents.fp32_contents)
    assert int(probabilities.argmax()) == rest.json()["results"][0]["top"][0]["index"]
    v2_rest = await servers.http.post(f"/v2/models/{CIFAR}/infer", json={
        "parameters": {"resize": "zoom"},
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(photo).decode()]}],
    })  # fmt: skip
    assert v2_rest.status_code == 400 and "resize must be one of" in v2_rest.json()["error"]
