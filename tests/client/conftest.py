"""Fixtures for the client tests: one real server process over the tiny test repository, with an API key, shared
by the session (the tests only read from it), and its two addresses; plus the service tests' fixtures, for the
tests that start a server of their own on the test's event loop (overload, limits, TLS).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixelserve.client import Client
from tests.service.conftest import core, metrics, model_repository, repository_template, settings
from tests.service.rest_support import ServerProcess, server_process

__all__ = ["core", "metrics", "model_repository", "repository_template", "settings"]

API_KEY = "client-test-key"
TRANSPORTS = ("rest", "grpc")


@pytest.fixture(scope="session")
def served(repository_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python -m pixelserve.service` with an API key, serving a private copy of the tiny repository."""
    root = tmp_path_factory.mktemp("served")
    repository = Path(shutil.copytree(repository_template, root / "models"))
    with server_process(repository, root / "server.log", "--api-key", API_KEY) as server:
        yield server


def address(server: ServerProcess, transport: str) -> str:
    return server.url if transport == "rest" else f"grpc://127.0.0.1:{server.grpc_port}"


@pytest.fixture(params=TRANSPORTS)
def url(request: pytest.FixtureRequest, served: ServerProcess) -> str:
    """The shared server's address over each transport in turn."""
    return address(served, request.param)


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(url, api_key=API_KEY, timeout=30) as opened:
        yield opened
