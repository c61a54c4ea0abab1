"""The optional API keys (security/keys.py), checked once for both REST edges: the hot routes call `KeyCheck` on
the raw headers, and the FastAPI routes call the same check from a dependency declared as FastAPI security, so
/docs offers an "Authorize" button."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from ..security.keys import KeyRing, presented

API_KEY_HEADER = "X-API-Key"
_KEY_NAME = API_KEY_HEADER.lower().encode()

_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
_bearer = HTTPBearer(auto_error=False)


class KeyCheck:
    """``X-API-Key: <key>`` or ``Authorization: Bearer <key>``; an empty one counts as not sent. The comparison
    is constant-time, so response timing does not leak how much of a guess was right."""

    __slots__ = ("_ring",)

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    def check(self, api_key: str | None, authorization: str | None) -> None:
        self._ring.check(presented({"x-api-key": api_key or "", "authorization": authorization or ""}))

    def check_scope(self, scope: Scope) -> None:
        """The check on an ASGI request's raw headers (the hot routes)."""
        api_key = authorization = None
        for name, value in scope["headers"]:
            if name == _KEY_NAME and api_key is None:
                api_key = value.decode("latin-1")
            elif name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
        self.check(api_key, authorization)


def api_key_guard(ring: KeyRing) -> Callable[..., Awaitable[None]]:
    """The FastAPI dependency: the security parameters document the two ways in for /docs; the request's own
    headers go to the one check."""
    keys = KeyCheck(ring)

    async def require_api_key(
        request: Request,
        key: Annotated[str | None, Security(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        keys.check(request.headers.get(API_KEY_HEADER), request.headers.get("authorization"))

    return require_api_key
