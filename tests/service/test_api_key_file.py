"""API keys from a file (a mounted Secret): several valid at once, re-read when the file changes, never logged;
the access log names the key a request used by its fingerprint. Against a real server process, both ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest

from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2 as pb
from pixelserve.service.grpc.gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from pixelserve.service.security.keys import KeyRing, fingerprint, presented
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import ROOT, server_process

OLD, NEW = "old-key-7f3a9c", "new-key-2b8e41"
PNG = encode_image(random_images(1, seed=5)[0])
REQUEST = pb.ClassifyRequest(model=CLASSIFIER, inputs=pb.ImageBatch(images=[pb.Image(encoded=PNG)]))


def _write(path: Path, text: str) -> None:
    """Replace the file whole, as a Secret update does."""
    path.with_suffix(".tmp").write_text(text)
    os.replace(path.with_suffix(".tmp"), path)


def _rest(url: str, key: str | None) -> int:
    headers = {"content-type": "image/png"} | ({"authorization": f"Bearer {key}"} if key else {})
    return httpx.post(f"{url}/v1/models/{CLASSIFIER}:classify", content=PNG, headers=headers).status_code


def _grpc(port: int, key: str) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            pb_grpc.PixelServeStub(channel).Classify(REQUEST,
                                                     metadata=[("x-api-key", key)], timeout=10)  # fmt: skip
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def _until(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_keys_are_rotated_through_the_file_without_a_restart(model_repository: Path, tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"# rotated by the platform team\n{OLD}\n")
    with server_process(model_repository, tmp_path / "server.log", "--api-key-file", str(keys)) as server:
        assert (_rest(server.url, OLD), _grpc(server.grpc_port, OLD)) == (200, grpc.StatusCode.OK)
        assert (_rest(server.url, NEW), _grpc(server.grpc_port, NEW)) == (401, grpc.StatusCode.UNAUTHENTICATED)
        assert _rest(server.url, None) == 401

        _write(keys, f"{OLD}\n{NEW}\n")  # both valid while clients move
        _until(lambda: _rest(server.url, NEW) == 200)
        assert _grpc(server.grpc_port, NEW) == grpc.StatusCode.OK
        assert _rest(server.url, OLD) == 200

        _write(keys, f"{NEW}\n")  # the old key is revoked
        _until(lambda: _rest(server.url, OLD) == 401)
        assert _grpc(server.grpc_port, OLD) == grpc.StatusCode.UNAUTHENTICATED
        assert (_rest(server.url, NEW), _grpc(server.grpc_port, NEW)) == (200, grpc.StatusCode.OK)
        server.terminate()
        assert server.wait() == 0
        log = server.log()
    assert OLD not in log and NEW not in log  # a key is never logged
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    used = {(entry.get("protocol"), entry.get("key")) for entry in entries if entry.get("model") == CLASSIFIER}
    assert {("http", fingerprint(OLD)), ("http", fingerprint(NEW)), ("grpc", fingerprint(NEW))} <= used
    assert ("http", None) in used  # the refused requests name no key


def test_an_empty_key_file_stops_start_up(model_repository: Path, tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text("# no key yet\n\n")
    command = [sys.executable, "-m", "pixelserve.service", "--model-repository", str(model_repository),
               "--http-port", "0", "--grpc-port", "0", "--api-key-file", str(keys)]  # fmt: skip
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "holds no key" in out.stderr
    out = subprocess.run([*command[:-1], str(tmp_path / "missing")], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 2 and "cannot be read" in out.stderr


def test_an_emptied_file_revokes_every_key_and_a_missing_one_keeps_the_last(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{OLD}\n")
    ring = KeyRing([], path, recheck_s=0.0)
    assert ring.match(OLD) == fingerprint(OLD)
    path.unlink()  # a replace caught in the middle: the last keys stay
    assert ring.match(OLD) == fingerprint(OLD)
    path.write_text("\n")
    assert ring.match(OLD) is None and ring.count() == 0


@pytest.mark.parametrize(
    ("metadata", "key"),
    [({"x-api-key": "a"}, "a"), ({"authorization": "Bearer  b "}, "b"), ({"authorization": "Basic c"}, None),
     ({"x-api-key": " ", "authorization": "bearer d"}, "d"), ({}, None)],
)  # fmt: skip
def test_the_presented_key_is_x_api_key_or_a_bearer_token(metadata: dict[str, str], key: str | None) -> None:
    assert presented(metadata) == key
