"""What a test needs from outside the checkout (a tool, a browser, real models or data): missing is a skip on a
workstation and a failure under ``CI=true``, where everything must be installed."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)
