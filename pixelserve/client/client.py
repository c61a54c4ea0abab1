"""`Client` and `AsyncClient`: pixelserve's task API over REST or gRPC behind one interface.

    with Client("http://localhost:8000", api_key="...") as client:         # or "grpc://localhost:8001"
        label = client.classify("mnist-classifier", "digit.png").one.label

The two classes have the same methods, arguments and results; `AsyncClient`'s are coroutines. The address picks
the transport (see `transport`); everything else is the same on both, and each call's images may be paths,
bytes, PIL images or numpy arrays, one or many (see `inputs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import grpc_wire, rest_wire, v2_wire
from .inputs import Images, collect
from .results import Classification, Encoding, Health, ImageResult, InferResult, ModelEntry, ModelInfo, TaskResult
from .retry import Retry
from .transport import MAX_MESSAGE_BYTES, AsyncGrpc, AsyncRest, Options, SyncGrpc, SyncRest

REST_PARSERS: dict[str, Any] = {
    "classify": rest_wire.classifications,
    "denoise": rest_wire.images,
    "reconstruct": rest_wire.images,
    "encode": rest_wire.encodings,
}


class _Calls:
    """Builds each call for the transport the address named; shared by both clients."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.wire: Any = rest_wire if options.kind == "rest" else grpc_wire

    def task(self, task: str, model: str, images: Images, version: int | None, tensors: bool, **options: Any) -> Any:
        batch = collect(images, tensors=tensors)
        if self.wire is rest_wire:
            return rest_wire.task_call(task, REST_PARSERS[task], model, version, batch, **options)
        return grpc_wire.task_call(task, model, version, batch, **options)

    def infer(self, model: str, images: Images, version: int | None, outputs: list[str] | None, tensors: bool) -> Any:
        batch = collect(images, tensors=tensors)
        build = v2_wire.rest_call if self.wire is rest_wire else v2_wire.grpc_call
        return build(model, version, batch, outputs)


def _options(url: str, api_key: str | None, timeout: float, retry: Retry | None, tls: dict[str, Any]) -> Options:
    return Options(url, api_key, timeout, retry or Retry(), **tls)


class Client:
    """A blocking client. `timeout` bounds each attempt in seconds; `retry` says how often and how long to
    retry answers that mean "not now" (Overloaded, Unavailable); TLS needs an https:// or grpcs:// address."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: Retry | None = None,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        tls = {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file, "max_message_bytes": max_message_bytes}
        options = _options(url, api_key, timeout, retry, tls)
        self._calls = _Calls(options)
        self._transport: Any = SyncRest(options) if options.kind == "rest" else SyncGrpc(options)

    @property
    def retried(self) -> int:
        """How many requests were sent again after an overload or unavailable answer."""
        return int(self._transport.retried)

    def classify(
        self,
        model: str,
        images: Images,
        *,
        version: int | None = None,
        top_k: int | None = None,
        resize: str | None = None,
        normalize: str | None = None,
        return_input: bool = False,
        tensors: bool = False,
    ) -> TaskResult[Classification]:
        """Top-k labels per image (5 unless `top_k`), with OOD scores when the model has a paired autoencoder."""
        call = self._calls.task("classify", model, images, version, tensors, top_k=top_k, resize=resize,
                                normalize=normalize, return_input=return_input)  # fmt: skip
        return self._transport.run(call)

    def denoise(
        self,
        model: str,
        images: Images,
        *,
        version: int | None = None,
        resize: str | None = None,
        normalize: str | None = None,
        return_input: bool = False,
        tensors: bool = False,
    ) -> TaskResult[ImageResult]:
        """The cleaned images, each with its distance from the input."""
        call = self._calls.task("denoise", model, images, version, tensors, resize=resize, normalize=normalize,
                                return_input=return_input)  # fmt: skip
        return self._transport.run(call)

    def reconstruct(
        self,
        model: str,
        images: Images,
        *,
        version: int | None = None,
        resize: str | None = None,
        normalize: str | None = None,
        return_input: bool = False,
        tensors: bool = False,
    ) -> TaskResult[ImageResult]:
        """Autoencoder reconstructions with their error and the calibrated anomaly verdict."""
        call = self._calls.task("reconstruct", model, images, version, tensors, resize=resize, normalize=normalize,
                                return_input=return_input)  # fmt: skip
        return self._transport.run(call)

    def encode(
        self,
        model: str,
        images: Images,
        *,
        version: int | None = None,
        resize: str | None = None,
        normalize: str | None = None,
        return_input: bool = False,
        tensors: bool = False,
    ) -> TaskResult[Encoding]:
        """Latent vectors, from an autoencoder that exports one."""
        call = self._calls.task("encode", model, images, version, tensors, resize=resize, normalize=normalize,
                                return_input=return_input)  # fmt: skip
        return self._transport.run(call)

    def infer(
        self,
        model: str,
        images: Images,
        *,
        outputs: list[str] | None = None,
        version: int | None = None,
        tensors: bool = False,
    ) -> InferResult:
        """KServe V2 inference: the model's raw outputs by name (all, or `outputs`), exact on both transports."""
        return self._transport.run(self._calls.infer(model, images, version, outputs, tensors))

    def models(self) -> list[ModelEntry]:
        """Every model in the server's repository with each version's state."""
        return self._transport.run(self._calls.wire.models_call())

    def model(self, name: str, version: int | None = None) -> ModelInfo:
        """One version's metadata (default: the version the server serves)."""
        return self._transport.run(self._calls.wire.model_call(name, version))

    def health(self, model: str | None = None, version: int | None = None) -> Health:
        """Whether the server is live and ready (or `model` is ready); unreachable raises Unavailable."""
        live = self._transport.run(self._calls.wire.live_call())
        ready = self._transport.run(self._calls.wire.ready_call(model, version))
        return Health(live=bool(live), ready=bool(live and ready))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """`Client` for asyncio: the same arguments, methods and results, each method a coroutine."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: Retry | None = None,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        tls = {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file, "max_message_bytes": max_message_bytes}
        options = _options(url, api_key, timeout, retry, tls)
        self._calls = _Calls(options)
        self._transport: Any = AsyncRest(options) if options.kind == "rest" else AsyncGrpc(options)

    @property
    def retried(self) -> int:
        """How many requests were sent again after an overload or unavailable answer."""
        return int(self._transport.retried)

    async def classify(
        self,
        model: str,
        images: Images,
        *,
        version: int | None = None,
        top_k: int | None = None,
        resize: str | None = None,
        normalize: str | None = None,
        return_input: bool = False,
        tensors: bool = False,
    ) -> TaskResult[Classification]:
        """Top-k labels per image (5 unless `top_k`), with OOD scores when the model has a paired autoencoder."""
        call = self._calls.task("classify", model, images, version, tensors, top_k=top_k, resize=resize,
                                normalize=normalize, return_input=return_input)  # fmt: skip
        return await self._transport.run(call)

    async def denoise(
        self,
        model: str,
        images: Images,
        *,
        version: int | None = None,
        resize: str | None = None,
        normalize: str | None = None,
        return_input: bool = False,
        tensors: bool = False,
    ) -> TaskResult[ImageResult]:
        """The cleaned images, each with its distance from the input."""
        call = self._calls.task("denoise", model, images, version, tensors, resize=resize, normalize=normalize,
                                return_input=return_input)  # fmt: skip
        return await self._transport.run(call)

    async def reconstruct(
        self,
        model: str,
        images: Images,
        *,
        version: int | None = None,
        resize: str | None = None,
        normalize: str | None = None,
        return_input: bool = False,
        tensors: bool = False,
    ) -> TaskResult[ImageResult]:
        """Autoencoder reconstructions with their error and the calibrated anomaly verdict."""
        call = self._calls.task("reconstruct", model, images, version, tensors, resize=resize, normalize=normalize,
                                return_input=return_input)  # fmt: skip
        return await self._transport.run(call)

    async def encode(
        self,
        model: str,
        images: Images,
        *,
        version: int | None = None,
        resize: str | None = None,
        normalize: str | None = None,
        return_input: bool = False,
        tensors: bool = False,
    ) -> TaskResult[Encoding]:
        """Latent vectors, from an autoencoder that exports one."""
        call = self._calls.task("encode", model, images, version, tensors, resize=resize, normalize=normalize,
                                return_input=return_input)  # fmt: skip
        return await self._transport.run(call)

    async def infer(
        self,
        model: str,
        images: Images,
        *,
        outputs: list[str] | None = None,
        version: int | None = None,
        tensors: bool = False,
    ) -> InferResult:
        """KServe V2 inference: the model's raw outputs by name (all, or `outputs`), exact on both transports."""
        return await self._transport.run(self._calls.infer(model, images, version, outputs, tensors))

    async def models(self) -> list[ModelEntry]:
        """Every model in the server's repository with each version's state."""
        return await self._transport.run(self._calls.wire.models_call())

    async def model(self, name: str, version: int | None = None) -> ModelInfo:
        """One version's metadata (default: the version the server serves)."""
        return await self._transport.run(self._calls.wire.model_call(name, version))

    async def health(self, model: str | None = None, version: int | None = None) -> Health:
        """Whether the server is live and ready (or `model` is ready); unreachable raises Unavailable."""
        live = await self._transport.run(self._calls.wire.live_call())
        ready = await self._transport.run(self._calls.wire.ready_call(model, version))
        return Health(live=bool(live), ready=bool(live and ready))

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
