"""HEAD on every GET route answers as GET does (status, type, length) and sends no body: load balancers and
uptime checks probe with HEAD, and a 405 there reads as an outage.

The routes come from the app itself (every GET route of every router, with a model, version and artifact
filled in, plus the playground's static files), so a new GET route is covered without editing this test.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pixelserve.modelspec import SPEC_FILE, ModelSpec
from pixelserve.service.core.core import InferenceCore
from pixelserve.service.observe.metrics import Metrics
from pixelserve.service.rest.app import create_api
from pixelserve.service.settings import Settings
from tests.service.abuse_support import Reply
from tests.service.models import CLASSIFIER, encode_image, random_images
from tests.service.rest_support import rest_server

PLOT = "learning_curves.png"
FILLED = {"name": CLASSIFIER, "version": "1", "file": PLOT}
STATIC = ["/ui/", "/ui/app.js", "/ui/style.css"]
CHANGING = {"/metrics"}  # its body changes between two requests, so its length may too


@pytest.fixture
def model_repository(model_repository: Path) -> Path:
    """The standard repository with one plot listed as an artifact, so the artifact route answers 200."""
    version = model_repository / CLASSIFIER / "1"
    (version / PLOT).write_bytes(encode_image(random_images(1, seed=5)[0]))
    spec = ModelSpec.load(version / SPEC_FILE)
    spec.model_copy(update={"artifacts": [PLOT]}).dump(version / SPEC_FILE)
    return model_repository


def get_routes(settings: Settings, metrics: Metrics) -> list[str]:
    def walk(routes: list) -> Iterator:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router
                yield from walk(route.original_router.routes)
            else:
                yield route

    api = create_api(InferenceCore(settings, metrics), settings, metrics)
    paths = [r.path for r in walk(api.routes) if "GET" in (getattr(r, "methods", None) or ())]
    filled = [re.sub(r"\{(\w+)(:\w+)?\}", lambda m: FILLED[m.group(1)], path) for path in paths]
    return sorted(set(filled)) + STATIC


def fetch(port: int, method: str, path: str) -> tuple[Reply, bytes]:
    """One request on its own connection; the head, and every byte the server sent after it until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Reply(int(status_line.split()[1]), headers, b""), body


async def test_head_answers_every_get_route_like_get_without_a_body(core, settings, metrics) -> None:
    paths = get_routes(settings, metrics)
    assert len(paths) >= 20, paths  # the routes were found, not an empty walk
    async with rest_server(core, settings, metrics) as url:
        port = urlsplit(url).port
        assert port is not None
        loop = asyncio.get_running_loop()
        wrong = []
        for path in paths:
            got, got_body = await loop.run_in_executor(None, fetch, port, "GET", path)
            head, head_body = await loop.run_in_executor(None, fetch, port, "HEAD", path)
            if got.status not in (200, 307):
                wrong.append(f"GET {path}: {got.status} {got_body[:120]!r} (the test should reach a real answer)")
            if head.status != got.status:
                wrong.append(f"HEAD {path}: {head.status}, GET {got.status}")
            if head_body:
                wrong.append(f"HEAD {path}: sent {len(head_body)} body bytes")
            for header in ("content-type", "content-length"):
                if header == "content-length" and path in CHANGING:
                    continue
                if head.headers.get(header) != got.headers.get(header):
                    wrong.append(f"HEAD {path}: {header} {head.headers.get(header)!r}, GET {got.headers.get(header)!r}")
    assert not wrong, f"{len(wrong)} wrong of {len(paths)} routes:\n" + "\n".join(wrong)
