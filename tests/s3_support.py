"""A real S3 API on loopback for the tests: moto's standalone server in its own process, a TCP relay in front
of it that can cut the store off (an outage without losing the store's state), and boto3 to fill it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from .service.rest_support import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "pixelserve-test-key",
    "AWS_SECRET_ACCESS_KEY": "pixelserve-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    """`moto.server` on a free port; `env` points botocore (and so s3fs) at it through the relay."""

    def __init__(self, log_path: Path) -> None:
        pytest.importorskip("moto.server", reason="moto[server] is in the [dev] extra")
        self.port = free_port()
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.relay = Relay(self.port)
        self.endpoint = f"http://127.0.0.1:{self.relay.port}"
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{self.port}/moto-api/", timeout=1).status_code < 500:
                    break
            assert time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.1)
        self.client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", **_boto_credentials())

    @property
    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def upload_dir(self, folder: Path, bucket: str, prefix: str, *, order: list[str] | None = None) -> None:
        """Every file of `folder` under `prefix`, model.json last unless `order` names the files to put."""
        names = order or sorted((p.name for p in folder.iterdir() if p.is_file()), key=lambda n: n == "model.json")
        for name in names:
            self.client.upload_file(str(folder / name), bucket, f"{prefix}/{name}")

    def upload_tree(self, folder: Path, bucket: str, prefix: str) -> list[str]:
        """Every file under `folder`, subfolders included, at the same relative keys under `prefix`."""
        keys = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            keys.append(f"{prefix}/{path.relative_to(folder).as_posix()}")
            self.client.upload_file(str(path), bucket, keys[-1])
        return keys

    def keys(self, bucket: str, prefix: str) -> list[str]:
        """The keys under `prefix`, sorted (every page of the listing)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        listed = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
        for item in listed:
            self.client.delete_object(Bucket=bucket, Key=item["Key"])

    def close(self) -> None:
        self.relay.close()
        self.process.kill()
        self.process.wait()
        self._log.close()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


class Relay:
    """Forwards loopback TCP to the store; `cut()` drops every connection and refuses new ones until `mend()`."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()

    def mend(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()


@contextlib.contextmanager
def s3_server(log_path: Path) -> Iterator[S3Server]:
    server = S3Server(log_path)
    try:
        yield server
    finally:
        server.close()
