"""Every knob of the service, read once at start-up and passed down (no import-time globals).

Sources, highest first: explicit arguments / CLI flags, ``PIXELSERVE_*`` environment variables, defaults.
Complex values (``pinned_versions``, ``cors_origins``) are JSON in the environment, e.g.
``PIXELSERVE_PINNED_VERSIONS='{"mnist-classifier": 1}'``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from pixelserve.commandline import CommandSettings

from .core.types import MAX_IMAGE_PIXELS, BatchPolicy, CallTask
from .storage import redact

Device = Literal["auto", "cpu", "cuda", "tensorrt"]
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://.")


def _location(value: object) -> object:
    """A folder, or an object-store URI whose scheme fsspec knows (whether its backend is installed is start-up's
    check). A URI must not fall through to a path: ``s3://b/p`` would become the empty folder ``s3:/b/p``."""
    if not isinstance(value, str):
        return value
    if "://" not in value:
        return Path(value)
    if value.lower().startswith("file://"):
        return Path(value[len("file://") :])
    from fsspec.registry import known_implementations, registry

    match = _SCHEME.match(value)
    scheme = match.group(1).lower() if match else value.split("://", 1)[0]
    if match is None or (scheme not in known_implementations and scheme not in registry):
        raise ValueError(f"{redact(value)}: no reader for {scheme}:// URIs (s3://, gs://, az://, other fsspec schemes)")
    return value


RepositoryLocation = Annotated[str | Path, BeforeValidator(_location)]
PayloadLogLocation = Annotated[str | Path | None, BeforeValidator(_location)]


class Settings(CommandSettings):
    """`pixelserve serve`."""

    # A URI may carry a user and password: no error repeats what was given (the messages name it redacted).
    model_config = SettingsConfigDict(cli_prog_name="pixelserve serve", hide_input_in_errors=True)

    model_repository: RepositoryLocation = Field(
        Path("models"),
        union_mode="left_to_right",
        description="folder or object-store URI (s3://bucket/prefix, gs://, az://) holding <name>/<version>/model.onnx",
    )
    model_cache_dir: Path = Field(
        Path(tempfile.gettempdir()) / "pixelserve-models",
        description="where versions from an object-store repository are downloaded and checked before loading",
    )
    allow_empty_repository: bool = Field(
        False, description="start without the repository folder, and answer ready with no model (filled later)"
    )
    http_host: str = Field("127.0.0.1", description="REST bind address (0.0.0.0 to listen on every interface)")
    http_port: int = Field(8000, description="REST port")
    grpc_host: str = Field("127.0.0.1", description="gRPC bind address (0.0.0.0 to listen on every interface)")
    grpc_port: int = Field(8001, description="gRPC port")
    device: Device = Field("auto", description="auto: CUDA when it really works, else CPU")
    cuda_device_id: int = Field(0, ge=0, description="GPU ordinal for CUDA/TensorRT")
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads (0 = runtime default)")
    inter_op_threads: int = Field(0, ge=0, description="onnxruntime inter-op threads (0 = runtime default)")
    allow_spinning: bool = Field(False, description="let onnxruntime's thread pools spin between runs")
    instances: int = Field(1, ge=1, description="onnxruntime sessions per model, each running its own batches")
    io_binding: Literal["auto", "on", "off"] = Field(
        "auto", description="onnxruntime I/O binding: auto uses it on GPU providers"
    )
    workers: int = Field(1, ge=1, description="server processes sharing the ports (SO_REUSEPORT)")
    offload_threads: int = Field(0, ge=0, description="threads that decode and encode big payloads (0: cores + 2)")
    max_batch_size: int = Field(32, ge=1, description="images per batch the dynamic batcher forms")
    max_queue_delay_ms: float = Field(2.0, ge=0, description="longest wait for a batch to fill")
    batch_policy: BatchPolicy = Field(
        "adaptive", description="adaptive: wait only while more requests are on their way; fill: for a full batch"
    )
    max_queue_size: int = Field(256, ge=1, description="images queued per model version before 429")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline of one request inside the server")
    header_timeout_s: float = Field(10.0, gt=0, description="an HTTP request's headers must arrive within this")
    body_timeout_s: float = Field(60.0, gt=0, description="an HTTP request's body must arrive within this")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="idle HTTP keep-alive connections close after this")
    max_keepalive_requests: int = Field(10_000, ge=1, description="requests on one HTTP connection before it closes")
    max_connections: int = Field(1024, ge=1, description="open HTTP connections per worker; more are closed")
    grpc_idle_timeout_s: float = Field(300.0, gt=0, description="idle gRPC connections are closed after this")
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1, description="largest request body")
    max_grpc_message_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1,
        description="largest gRPC request message; grpc.aio copies each one on the event loop while holding the GIL "
        "(2-4 ms per MiB on 2 cores), so this bounds how long one message can hold every other request",
    )
    max_json_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1,
        description="largest JSON body or JSON part: V2 tensors as JSON numbers, task-API images as base64 "
        "(parsing JSON holds the GIL; binary V2 data, multipart and raw images have max_request_bytes)",
    )
    max_image_pixels: int = Field(MAX_IMAGE_PIXELS, ge=1, description="largest decoded image (width*height)")
    max_batch_images: int = Field(256, ge=1, description="most images in one request")
    api_key: SecretStr | None = Field(None, description="when set, every request needs it")
    api_key_file: Path | None = Field(
        None, description="API keys, one per line, all valid at once (with api_key too); re-read when it changes"
    )
    tls_cert_file: Path | None = Field(None, description="certificate chain (PEM): HTTPS and gRPC over TLS")
    tls_key_file: Path | None = Field(None, description="the certificate's private key (PEM)")
    tls_client_ca_file: Path | None = Field(
        None, description="CA bundle (PEM) for mutual TLS: a client without a certificate it signed is refused"
    )
    allow_repository_control: bool = Field(
        False, description="allow load and unload over REST and gRPC (hot reload from disk works either way)"
    )
    pinned_versions: dict[str, int] = Field(default_factory=dict, description='{"model": version} to pin')
    hot_reload: bool = Field(True, description="poll the repository and swap in new versions")
    reload_interval_s: float = Field(2.0, gt=0, description="repository poll period")
    drain_grace_s: float = Field(20.0, ge=0, description="how long shutdown waits for in-flight requests")
    warmup: bool = Field(True, description="run zero batches through a new session before serving")
    quality_gate: bool = Field(True, description="a new version must answer its golden set before it serves")
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field("auto", description="auto: uvloop when installed")
    switch_interval_ms: float = Field(
        0.0, ge=0, description="how often Python hands the GIL between threads (0: its default, 5 ms)"
    )
    drift_monitoring: bool = Field(True, description="score live traffic against model.json's drift baseline")
    drift_window_s: float = Field(3600.0, gt=0, description="how much recent traffic the drift gauges are of")
    drift_min_samples: int = Field(500, ge=1, description="images in the window before drift is reported")
    drift_refresh_s: float = Field(15.0, gt=0, description="how often the drift gauges are recomputed")
    access_log: bool = Field(True, description="one JSON line per request on stderr, written off the request path")
    access_log_probes: bool = Field(False, description="log health checks and /metrics scrapes too")
    access_log_buffer: int = Field(10_000, ge=1, description="entries queued for the writer; more are dropped")
    tracing: bool = Field(
        False, description="OpenTelemetry spans per request (exporter and service name from OTEL_* variables)"
    )
    log_level: str = Field("info", description="python logging level")
    cors_origins: list[str] = Field(default_factory=list, description="allowed browser origins")
    # Payload logging (observe/payloads): sampled inputs and answers into rotating shards for retraining
    payload_log_dir: PayloadLogLocation = Field(
        None,
        union_mode="left_to_right",
        description="write sampled requests' images and answers under this folder or object-store URI "
        "(s3://bucket/prefix: each shard staged locally, uploaded whole when complete; unset: no logging)",
    )
    payload_log_rate: float = Field(1.0, ge=0, le=1, description="share of eligible requests logged, 0..1")
    payload_log_models: list[str] = Field(default_factory=list, description="models to log (empty: every model)")
    payload_log_tasks: list[CallTask] = Field(
        default_factory=list, description="tasks to log, infer is raw V2 inference (empty: every task)"
    )
    payload_log_format: Literal["parquet", "jsonl"] = Field(
        "parquet", description="shard format: parquet needs pyarrow (the [batch] extra), jsonl has images in base64"
    )
    payload_log_shard_rows: int = Field(10_000, ge=1, description="rows per shard before the next one starts")
    payload_log_shard_s: float = Field(300.0, gt=0, description="a shard is closed after this long even if not full")
    payload_log_buffer: int = Field(
        1024, ge=1, description="requests held in memory for the writer at most; more are dropped and counted"
    )
