"""Register one endpoint under both ``/.../{name}...`` and ``/.../{name}/versions/{version}...``.

The endpoint is written once with ``version: str | None = None``; the unversioned route hides the parameter
(so it is not offered as a query string) and the versioned route makes it a required path parameter. It stays
text: the version rule is the protocol's (protocol/tasks.model_ref, V2's model_ref), not FastAPI's int parsing,
so every edge reads ``/versions/-1`` alike.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path

Endpoint = Callable[..., Awaitable[Any]]
VERSION = "version"
VersionPath = Annotated[str, Path(description="a positive integer: the model's version directory")]


def _unversioned(endpoint: Endpoint) -> Endpoint:
    signature = inspect.signature(endpoint)

    @functools.wraps(endpoint)
    async def call(**kwargs: Any) -> Any:
        return await endpoint(**kwargs, version=None)

    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name != VERSION]
    )
    return call


def _versioned(endpoint: Endpoint) -> Endpoint:
    signature = inspect.signature(endpoint)

    @functools.wraps(endpoint)
    async def call(**kwargs: Any) -> Any:
        return await endpoint(**kwargs)

    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=VersionPath, default=inspect.Parameter.empty) if p.name == VERSION else p
            for p in signature.parameters.values()
        ]
    )
    return call


def add_model_routes(
    router: APIRouter, prefix: str, suffix: str, endpoint: Endpoint, method: str, **kwargs: Any
) -> None:
    """``prefix`` ends with ``{name}``; ``suffix`` is what follows (``/infer``, ``:classify``, or empty)."""
    router.add_api_route(prefix + suffix, _unversioned(endpoint), methods=[method], **kwargs)
    router.add_api_route(f"{prefix}/versions/{{{VERSION}}}{suffix}", _versioned(endpoint), methods=[method], **kwargs)
