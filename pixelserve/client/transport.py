"""The four ways a call travels: REST or gRPC, sync or async. Each sends a prepared call, turns every failure
into a `PixelServeError` and sends again when the answer was "not now", waiting as the server asked.

The address says the transport: ``http://`` and ``https://`` are REST (a path prefix is kept, e.g. behind a
proxy), ``grpc://`` and ``grpcs://`` are gRPC; the ``s`` turns on TLS, which takes a CA file (default: the
system's roots) and, for mutual TLS, a client certificate and key.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import httpx

from pixelserve import __version__

from .errors import DeadlineExceeded, PixelServeError, Unavailable, from_grpc, from_http
from .gen.inference import grpc_service_pb2_grpc as v2_grpc
from .gen.pixelserve.v1 import pixelserve_pb2_grpc as pb_grpc
from .grpc_wire import TASK, GrpcCall
from .rest_wire import RestCall
from .retry import Retry

T = TypeVar("T")
USER_AGENT = f"pixelserve-client/{__version__}"
API_KEY_HEADER = "X-API-Key"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SCHEMES = {"http": ("rest", False), "https": ("rest", True), "grpc": ("grpc", False), "grpcs": ("grpc", True)}


@dataclass(frozen=True)
class Options:
    """Everything a transport needs besides the call: where, who, how long, how safely, how persistently."""

    url: str
    api_key: str | None = None
    timeout_s: float = 60.0
    retry: Retry = field(default_factory=Retry)
    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    max_message_bytes: int = MAX_MESSAGE_BYTES

    @property
    def kind(self) -> str:
        return self._scheme()[0]

    @property
    def tls(self) -> bool:
        return self._scheme()[1]

    def _scheme(self) -> tuple[str, bool]:
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in SCHEMES:
            raise ValueError(f"{self.url!r}: start the address with http://, https://, grpc:// or grpcs://")
        kind, tls = SCHEMES[scheme]
        if not tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError(f"{self.url!r}: TLS options need an https:// or grpcs:// address")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs its key, and a key its certificate (cert_file, key_file)")
        return kind, tls

    @property
    def grpc_address(self) -> str:
        return urlsplit(self.url).netloc

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.ca_file), read(self.key_file), read(self.cert_file))

    def grpc_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.primary_user_agent", USER_AGENT),
        ]

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            headers[API_KEY_HEADER] = self.api_key
        return headers

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.api_key),) if self.api_key else ()


def _http_error(exc: httpx.HTTPError, timeout_s: float) -> PixelServeError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return DeadlineExceeded(f"no answer within {timeout_s:g} s ({type(exc).__name__})", code="DEADLINE_EXCEEDED")
    return Unavailable(f"{type(exc).__name__}: {exc}", code="UNAVAILABLE")


def _answer(call: RestCall[T], response: httpx.Response) -> T:
    if response.status_code in call.answers:
        return call.parse(response.status_code, response.content, response.headers)
    try:
        body = response.json()
    except ValueError:
        body = None
    raise from_http(response.status_code, body, response.headers)


def _grpc_error(exc: grpc.RpcError) -> PixelServeError:
    call: Any = exc  # a grpc.RpcError raised by a call is also a grpc.Call (code, details, trailers)
    return from_grpc(call.code().name, call.details(), call.trailing_metadata())


class _Transport:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.retried = 0  # requests sent again (overload, unavailable), for reports and tests

    def _next_wait(self, attempt: int, error: PixelServeError) -> float:
        delay = self.options.retry.delay(attempt, error)
        if delay is None:
            raise error
        self.retried += 1
        return delay


class SyncRest(_Transport):
    def __init__(self, options: Options) -> None:
        super().__init__(options)
        verify: ssl.SSLContext | bool = options.ssl_context() if options.tls else True
        self.http = httpx.Client(
            base_url=options.url, headers=options.headers(), timeout=options.timeout_s, verify=verify
        )

    def run(self, call: RestCall[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self.http.request(
                    call.method, call.path, params=call.params, content=call.content, files=call.files,
                    headers=call.headers,
                )  # fmt: skip
                return _answer(call, response)
            except httpx.HTTPError as exc:
                error = _http_error(exc, self.options.timeout_s)
            except PixelServeError as exc:
                error = exc
            time.sleep(self._next_wait(attempt, error))
            attempt += 1

    def close(self) -> None:
        self.http.close()


class AsyncRest(_Transport):
    def __init__(self, options: Options) -> None:
        super().__init__(options)
        verify: ssl.SSLContext | bool = options.ssl_context() if options.tls else True
        self.http = httpx.AsyncClient(
            base_url=options.url, headers=options.headers(), timeout=options.timeout_s, verify=verify
        )

    async def run(self, call: RestCall[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self.http.request(
                    call.method, call.path, params=call.params, content=call.content, files=call.files,
                    headers=call.headers,
                )  # fmt: skip
                return _answer(call, response)
            except httpx.HTTPError as exc:
                error = _http_error(exc, self.options.timeout_s)
            except PixelServeError as exc:
                error = exc
            await asyncio.sleep(self._next_wait(attempt, error))
            attempt += 1

    async def close(self) -> None:
        await self.http.aclose()


class SyncGrpc(_Transport):
    def __init__(self, options: Options) -> None:
        super().__init__(options)
        address, channel_options = options.grpc_address, options.grpc_options()
        if options.tls:
            self.channel = grpc.secure_channel(address, options.grpc_credentials(), channel_options)
        else:
            self.channel = grpc.insecure_channel(address, channel_options)
        self.stubs = {TASK: pb_grpc.PixelServeStub(self.channel), "v2": v2_grpc.GRPCInferenceServiceStub(self.channel)}

    def run(self, call: GrpcCall[T]) -> T:
        method = getattr(self.stubs[call.service], call.method)
        attempt = 0
        while True:
            try:
                response = method(call.request, metadata=self.options.metadata(), timeout=self.options.timeout_s)
                return call.parse(response)
            except grpc.RpcError as exc:
                error = _grpc_error(exc)
            time.sleep(self._next_wait(attempt, error))
            attempt += 1

    def close(self) -> None:
        self.channel.close()


class AsyncGrpc(_Transport):
    """The channel opens on the first call, inside the event loop that uses it (a grpc.aio channel belongs to the
    loop it was made in, and a client may be built before asyncio.run starts one)."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.channel: grpc.aio.Channel | None = None
        self.stubs: dict[str, Any] = {}

    def _open(self) -> dict[str, Any]:
        if self.channel is None:
            address, channel_options = self.options.grpc_address, self.options.grpc_options()
            if self.options.tls:
                credentials = self.options.grpc_credentials()
                self.channel = grpc.aio.secure_channel(address, credentials, channel_options)
            else:
                self.channel = grpc.aio.insecure_channel(address, channel_options)
            self.stubs = {
                TASK: pb_grpc.PixelServeStub(self.channel),
                "v2": v2_grpc.GRPCInferenceServiceStub(self.channel),
            }
        return self.stubs

    async def run(self, call: GrpcCall[T]) -> T:
        method = getattr(self._open()[call.service], call.method)
        attempt = 0
        while True:
            try:
                response = await method(call.request, metadata=self.options.metadata(), timeout=self.options.timeout_s)
                return call.parse(response)
            except grpc.RpcError as exc:
                error = _grpc_error(exc)
            await asyncio.sleep(self._next_wait(attempt, error))
            attempt += 1

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
