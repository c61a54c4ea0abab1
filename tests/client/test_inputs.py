"""Every kind of input a caller may hold, one or many, gives the same answer as the PNG files themselves, over
both transports, sync and async."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelserve.client import AsyncClient, Client
from pixelserve.client.inputs import collect
from tests.client.conftest import API_KEY
from tests.service.models import CLASSIFIER, CLASSIFIER_RGB, encode_image, random_images

PIXELS = random_images(3, seed=21)  # N, 8, 8, 1
PNGS = [encode_image(p) for p in PIXELS]


def _kinds(tmp_path: Path) -> dict[str, object]:
    """The three images in every form the client takes; each entry means the same three images."""
    paths = []
    for i, png in enumerate(PNGS):
        paths.append(tmp_path / f"image{i}.png")
        paths[-1].write_bytes(png)
    return {
        "str paths": [str(p) for p in paths],
        "Path objects": paths,
        "bytes": PNGS,
        "bytearray and memoryview": [bytearray(PNGS[0]), memoryview(PNGS[1]), PNGS[2]],
        "PIL images": [Image.fromarray(p[..., 0]) for p in PIXELS],
        "an NHWC batch": PIXELS,
        "an NHW batch": PIXELS[..., 0],
        "a list of HWC arrays": list(PIXELS),
        "a list of HW arrays": [p[..., 0] for p in PIXELS],
        "float arrays of 0..255": PIXELS.astype(np.float64),
        "a mixed list": [str(paths[0]), Image.fromarray(PIXELS[1, ..., 0]), PIXELS[2]],
    }


def _labels(result) -> list[list[tuple[int, float]]]:
    return [[(s.index, round(s.probability, 6)) for s in item.top] for item in result]


def test_every_input_kind_classifies_as_the_png_files_do(client: Client, tmp_path: Path) -> None:
    expected = _labels(client.classify(CLASSIFIER, PNGS))
    for kind, images in _kinds(tmp_path).items():
        assert _labels(client.classify(CLASSIFIER, images)) == expected, kind


def test_one_image_of_each_kind_is_one_result(client: Client, tmp_path: Path) -> None:
    expected = _labels(client.classify(CLASSIFIER, PNGS[0]))
    path = tmp_path / "one.png"
    path.write_bytes(PNGS[0])
    for one in (str(path), path, PNGS[0], Image.fromarray(PIXELS[0, ..., 0]), PIXELS[0], PIXELS[0, ..., 0]):
        result = client.classify(CLASSIFIER, one)
        assert len(result) == 1 and _labels(result) == expected, type(one)


def test_rgb_arrays_and_rgb_pil_images(client: Client) -> None:
    rgb = random_images(2, channels=3, seed=22)
    expected = _labels(client.classify(CLASSIFIER_RGB, [encode_image(p) for p in rgb]))
    assert _labels(client.classify(CLASSIFIER_RGB, rgb)) == expected
    assert _labels(client.classify(CLASSIFIER_RGB, [Image.fromarray(p) for p in rgb])) == expected


async def test_the_async_client_takes_the_same_inputs(url: str, tmp_path: Path) -> None:
    async with AsyncClient(url, api_key=API_KEY) as client:
        expected = _labels(await client.classify(CLASSIFIER, PNGS))
        for kind, images in _kinds(tmp_path).items():
            assert _labels(await client.classify(CLASSIFIER, images)) == expected, kind


def test_collect_shapes_one_and_many() -> None:
    assert len(collect(PIXELS[0])) == 1 and len(collect(PIXELS[0, ..., 0])) == 1  # HWC and HW: one image
    assert len(collect(PIXELS)) == 3 and len(collect(PIXELS[..., 0])) == 3  # NHWC and NHW: a batch
    batch = collect(PIXELS[..., 0], tensors=True).tensor
    assert batch is not None and batch.shape == (3, 8, 8, 1) and batch.dtype == np.uint8
    floats = collect(PIXELS.astype(np.float64), tensors=True).tensor
    assert floats is not None and floats.dtype == np.float32  # the server rounds float32 pixels itself
    assert collect([PIXELS[0], PIXELS[1]], tensors=True).tensor.shape == (2, 8, 8, 1)  # type: ignore[union-attr]
    assert collect(np.array([[300.0, -4.0]])).encoded == [encode_image(np.array([[255, 0]], dtype=np.uint8))]


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([], ValueError, "no images"),
        (np.zeros((2, 2, 2, 2, 1), np.uint8), ValueError, "HW, HWC or a batch"),
        ([PIXELS], ValueError, "each array is one HW or HWC image"),
        ([1.5], TypeError, "cannot send float"),
        (np.zeros(3, np.complex64), ValueError, "HW, HWC or a batch"),
    ],
)
def test_collect_refuses_what_is_not_an_image(images: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        collect(images)  # type: ignore[arg-type]


def test_tensors_take_arrays_of_one_shape_only() -> None:
    with pytest.raises(TypeError, match="arrays only"):
        collect([PNGS[0]], tensors=True)
    with pytest.raises(ValueError, match="share one shape"):
        collect([PIXELS[0], np.zeros((4, 4, 1), np.uint8)], tensors=True)
