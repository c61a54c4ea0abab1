"""Optional API-key check, declared as FastAPI security so /docs offers an "Authorize" button."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from ..errors import Unauthenticated

API_KEY_HEADER = "X-API-Key"

_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def api_key_guard(api_key: SecretStr) -> Callable[..., Awaitable[None]]:
    """A dependency that accepts ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

    The comparison is constant-time so response timing does not leak how much of a guess was right.
    """
    expected = api_key.get_secret_value().encode()

    async def require_api_key(
        key: Annotated[str | None, Security(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        supplied = key if key is not None else (bearer.credentials if bearer is not None else None)
        if supplied is None:
            raise Unauthenticated(f"missing API key: send {API_KEY_HEADER}: <key> or Authorization: Bearer <key>")
        if not hmac.compare_digest(supplied.encode(), expected):
            raise Unauthenticated("wrong API key")

    return require_api_key
