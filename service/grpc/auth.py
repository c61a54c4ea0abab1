"""The optional API keys for gRPC (security/keys.py): metadata ``x-api-key: KEY`` or ``authorization: Bearer KEY``.

Health and reflection stay open so probes and grpcurl work without the key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import grpc

from ..errors import Unauthenticated, mapping_for
from ..security.keys import KeyRing, presented

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def text_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """The first text value of each key, as the edge's request context and the key check both read metadata:
    binary (``-bin``) values, e.g. tracing context, may hold any bytes."""
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):
            found.setdefault(key, value)
    return found


def _rejecting(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind that ends the call as unauthenticated before reading a message."""
    code = mapping_for(Unauthenticated(message)).grpc_code

    async def deny(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    factories = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    factory = factories[(handler.request_streaming, handler.response_streaming)]
    return factory(
        deny, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        try:
            self._ring.check(presented(text_metadata(details.invocation_metadata)))
        except Unauthenticated as refused:
            return _rejecting(handler, str(refused))
        return handler
