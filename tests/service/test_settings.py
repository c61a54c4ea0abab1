"""Settings come from defaults, PIXELSERVE_* environment variables and CLI flags, in rising priority."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pixelserve.service.settings import Settings


def test_defaults_match_the_documented_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIXELSERVE_HTTP_PORT", "PIXELSERVE_DEVICE", "PIXELSERVE_PINNED_VERSIONS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.model_repository, settings.http_port, settings.grpc_port) == (Path("models"), 8000, 8001)
    assert (settings.device, settings.max_batch_size, settings.max_request_bytes) == ("auto", 32, 64 * 1024 * 1024)
    assert settings.pinned_versions == {} and settings.api_key is None
    assert settings.max_grpc_message_bytes == 8 * 1024 * 1024  # README: what a bigger one costs the event loop


def test_environment_overrides_defaults_and_parses_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELSERVE_HTTP_PORT", "9000")
    monkeypatch.setenv("PIXELSERVE_PINNED_VERSIONS", '{"mnist-classifier": 2}')
    monkeypatch.setenv("PIXELSERVE_API_KEY", "s3cret")
    settings = Settings()
    assert settings.http_port == 9000
    assert settings.pinned_versions == {"mnist-classifier": 2}
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_cli_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELSERVE_GRPC_PORT", "7000")
    monkeypatch.setenv("PIXELSERVE_MAX_BATCH_SIZE", "4")
    settings = Settings.from_cli(["--grpc-port", "7100", "--device", "cpu", "--hot-reload", "false"])
    assert (settings.grpc_port, settings.device, settings.hot_reload) == (7100, "cpu", False)
    assert settings.max_batch_size == 4


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(device="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(max_batch_size=0)
