"""Builds the one grpc.aio server: task API, KServe V2, health and reflection; the caller starts and stops it."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from ..core.types import Core
from ..observe.metrics import Metrics
from ..security.keys import KeyRing
from ..security.tls import ServerTls
from ..settings import Settings
from .auth import ApiKeyInterceptor
from .edge import with_hooks
from .gen.inference import grpc_service_pb2, grpc_service_pb2_grpc, model_config_pb2
from .gen.pixelserve.v1 import pixelserve_pb2, pixelserve_pb2_grpc
from .health import HealthServicer
from .task_servicer import TaskServicer
from .v2_servicer import InferenceServicer
from .wire import Wrapper, add_guarded

log = logging.getLogger(__name__)

TASK_SERVICE = pixelserve_pb2.DESCRIPTOR.services_by_name["PixelServe"].full_name
V2_SERVICE = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Dependencies before dependants: a pool only accepts a file once its imports are in.
REFLECTED_FILES: tuple[FileDescriptor, ...] = (
    model_config_pb2.DESCRIPTOR,
    grpc_service_pb2.DESCRIPTOR,
    struct_pb2.DESCRIPTOR,  # ModelMetadata.spec
    pixelserve_pb2.DESCRIPTOR,
    health_pb2.DESCRIPTOR,
    reflection_pb2.DESCRIPTOR,
)


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """One pool with every service we reflect: ours live in a private pool, health and reflection in the
    default one, and the reflection servicer reads a single pool."""
    pool = descriptor_pool.DescriptorPool()
    for file in REFLECTED_FILES:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())
    return pool


def bind_address(settings: Settings) -> str:
    host = settings.grpc_host
    return f"[{host}]:{settings.grpc_port}" if ":" in host else f"{host}:{settings.grpc_port}"


def create_grpc_server(
    core: Core, settings: Settings, metrics: Metrics, keys: KeyRing | None = None, tls: ServerTls | None = None
) -> grpc.aio.Server:
    """The server with its port bound (port 0 picks a free one; see the log line) but not started. When the
    core's operations hooks work at the edge (access log, tracing), every call of the task and V2 services
    goes through them (health checks do not). `keys` and `tls` are shared with the REST server (default: read
    from the settings)."""
    keys = keys if keys is not None else KeyRing.from_settings(settings)
    tls = tls if tls is not None else ServerTls.from_settings(settings)
    interceptors = [ApiKeyInterceptor(keys)] if keys is not None else []
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_grpc_message_bytes),
            ("grpc.max_send_message_length", settings.max_request_bytes),
            # Connection hygiene: idle connections go away, a handshake must finish, streams per connection
            # and connections per server are bounded (grpc core enforces each).
            ("grpc.max_connection_idle_ms", int(settings.grpc_idle_timeout_s * 1000)),
            ("grpc.server_handshake_timeout_ms", int(settings.header_timeout_s * 1000)),
            ("grpc.max_concurrent_streams", 1024),
            ("grpc.max_allowed_incoming_connections", settings.max_connections),
            # A second server on the same port must fail, not share it, unless it is one of several workers.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ],
    )
    identify = keys.identify if keys is not None else None
    wrappers: list[Wrapper] = [with_hooks(core.hooks, identify)] if core.hooks.edge else []
    add_guarded(pixelserve_pb2_grpc.add_PixelServeServicer_to_server, TaskServicer(core, settings, metrics), server,
                wrappers, core.offload.sized)  # fmt: skip
    add_guarded(grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
                InferenceServicer(core, settings, metrics), server, wrappers, core.offload.sized)  # fmt: skip
    add_guarded(health_pb2_grpc.add_HealthServicer_to_server, HealthServicer(core, (TASK_SERVICE, V2_SERVICE)), server)
    reflection.enable_server_reflection(
        (TASK_SERVICE, V2_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server, pool=reflection_pool()
    )
    address = bind_address(settings)
    port = server.add_secure_port(address, tls.grpc_credentials()) if tls else server.add_insecure_port(address)
    log.info("gRPC bound to %s (port %d%s)", address, port, ", TLS" if tls else "")
    return server
