"""pixelserve's client: the task API of a running server over REST or gRPC, sync or async.

Installs alone with ``pip install 'pixelserve[client]'`` (httpx, grpcio, protobuf, numpy, Pillow): nothing here
imports the server, onnxruntime, FastAPI or uvicorn.

    from pixelserve.client import Client

    with Client("grpc://localhost:8001") as client:
        result = client.classify("mnist-classifier", ["a.png", "b.png"], top_k=3)
        for item in result:
            print(item.label, item.probability, item.is_ood)
"""

from .client import AsyncClient, Client
from .errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    PixelServeError,
    ServerError,
    Unauthenticated,
    Unavailable,
)
from .inputs import ImageLike, Images
from .results import (
    AnomalyThreshold,
    Classification,
    Encoding,
    Health,
    ImageResult,
    InferResult,
    Label,
    ModelEntry,
    ModelInfo,
    Prepared,
    Preprocessing,
    Quality,
    ServedBy,
    TaskResult,
    TensorInfo,
    VersionState,
)
from .retry import Retry

__all__ = [
    "AnomalyThreshold",
    "AsyncClient",
    "Classification",
    "Client",
    "DeadlineExceeded",
    "Encoding",
    "Health",
    "ImageLike",
    "ImageResult",
    "Images",
    "InferResult",
    "InvalidInput",
    "Label",
    "ModelEntry",
    "ModelInfo",
    "ModelNotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "PixelServeError",
    "Prepared",
    "Preprocessing",
    "Quality",
    "Retry",
    "ServedBy",
    "ServerError",
    "TaskResult",
    "TensorInfo",
    "Unauthenticated",
    "Unavailable",
    "VersionState",
]
