from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DATA_TYPE_UNSPECIFIED: _ClassVar[Tensor.DataType]
        DATA_TYPE_UINT8: _ClassVar[Tensor.DataType]
        DATA_TYPE_FLOAT32: _ClassVar[Tensor.DataType]
    DATA_TYPE_UNSPECIFIED: Tensor.DataType
    DATA_TYPE_UINT8: Tensor.DataType
    DATA_TYPE_FLOAT32: Tensor.DataType
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: Tensor.DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[Tensor.DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoded", "tensor")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    tensor: Tensor
    def __init__(self, encoded: _Optional[bytes] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ImageBatch(_message.Message):
    __slots__ = ("images", "batch", "resize", "normalize", "return_input")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    RETURN_INPUT_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    batch: Tensor
    resize: str
    normalize: str
    return_input: bool
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., batch: _Optional[_Union[Tensor, _Mapping]] = ..., resize: _Optional[str] = ..., normalize: _Optional[str] = ..., return_input: _Optional[bool] = ...) -> None: ...

class Prepared(_message.Message):
    __slots__ = ("resize", "normalize", "inputs")
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    resize: str
    normalize: str
    inputs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, resize: _Optional[str] = ..., normalize: _Optional[str] = ..., inputs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ServedBy(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "version", "inputs", "top_k", "request_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    inputs: ImageBatch
    top_k: int
    request_id: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., inputs: _Optional[_Union[ImageBatch, _Mapping]] = ..., top_k: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("index", "label", "probability")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    label: str
    probability: float
    def __init__(self, index: _Optional[int] = ..., label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("top", "ood_score", "ood_threshold", "is_ood", "anomaly_score")
    TOP_FIELD_NUMBER: _ClassVar[int]
    OOD_SCORE_FIELD_NUMBER: _ClassVar[int]
    OOD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IS_OOD_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_SCORE_FIELD_NUMBER: _ClassVar[int]
    top: _containers.RepeatedCompositeFieldContainer[LabelScore]
    ood_score: float
    ood_threshold: float
    is_ood: bool
    anomaly_score: float
    def __init__(self, top: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., ood_score: _Optional[float] = ..., ood_threshold: _Optional[float] = ..., is_ood: _Optional[bool] = ..., anomaly_score: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("model", "results", "request_id", "error", "prepared")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    model: ServedBy
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    request_id: str
    error: Status
    prepared: Prepared
    def __init__(self, model: _Optional[_Union[ServedBy, _Mapping]] = ..., results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ..., request_id: _Optional[str] = ..., error: _Optional[_Union[Status, _Mapping]] = ..., prepared: _Optional[_Union[Prepared, _Mapping]] = ...) -> None: ...

class DenoiseRequest(_message.Message):
    __slots__ = ("model", "version", "inputs", "return_tensor")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    RETURN_TENSOR_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    inputs: ImageBatch
    return_tensor: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., inputs: _Optional[_Union[ImageBatch, _Mapping]] = ..., return_tensor: _Optional[bool] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("model", "version", "inputs", "return_tensor")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    RETURN_TENSOR_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    inputs: ImageBatch
    return_tensor: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., inputs: _Optional[_Union[ImageBatch, _Mapping]] = ..., return_tensor: _Optional[bool] = ...) -> None: ...

class Reconstruction(_message.Message):
    __slots__ = ("png", "error", "threshold", "is_anomaly", "tensor", "anomaly_score", "anomaly_map")
    PNG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IS_ANOMALY_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_SCORE_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_MAP_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    error: float
    threshold: float
    is_anomaly: bool
    tensor: Tensor
    anomaly_score: float
    anomaly_map: Tensor
    def __init__(self, png: _Optional[bytes] = ..., error: _Optional[float] = ..., threshold: _Optional[float] = ..., is_anomaly: _Optional[bool] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., anomaly_score: _Optional[float] = ..., anomaly_map: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class DenoiseResponse(_message.Message):
    __slots__ = ("model", "results", "prepared")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    model: ServedBy
    results: _containers.RepeatedCompositeFieldContainer[Reconstruction]
    prepared: Prepared
    def __init__(self, model: _Optional[_Union[ServedBy, _Mapping]] = ..., results: _Optional[_Iterable[_Union[Reconstruction, _Mapping]]] = ..., prepared: _Optional[_Union[Prepared, _Mapping]] = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("model", "results", "prepared")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    model: ServedBy
    results: _containers.RepeatedCompositeFieldContainer[Reconstruction]
    prepared: Prepared
    def __init__(self, model: _Optional[_Union[ServedBy, _Mapping]] = ..., results: _Optional[_Iterable[_Union[Reconstruction, _Mapping]]] = ..., prepared: _Optional[_Union[Prepared, _Mapping]] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("model", "version", "inputs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    inputs: ImageBatch
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., inputs: _Optional[_Union[ImageBatch, _Mapping]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("latent",)
    LATENT_FIELD_NUMBER: _ClassVar[int]
    latent: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, latent: _Optional[_Iterable[float]] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("model", "results", "prepared")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    model: ServedBy
    results: _containers.RepeatedCompositeFieldContainer[Embedding]
    prepared: Prepared
    def __init__(self, model: _Optional[_Union[ServedBy, _Mapping]] = ..., results: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., prepared: _Optional[_Union[Prepared, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelVersionStatus(_message.Message):
    __slots__ = ("name", "version", "state", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    state: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "index")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelVersionStatus]
    index: ModelIndex
    def __init__(self, models: _Optional[_Iterable[_Union[ModelVersionStatus, _Mapping]]] = ..., index: _Optional[_Union[ModelIndex, _Mapping]] = ...) -> None: ...

class VersionStatus(_message.Message):
    __slots__ = ("version", "state", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: int
    state: str
    reason: str
    def __init__(self, version: _Optional[int] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ModelIndexEntry(_message.Message):
    __slots__ = ("name", "task", "provider", "state", "versions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    provider: str
    state: str
    versions: _containers.RepeatedCompositeFieldContainer[VersionStatus]
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., provider: _Optional[str] = ..., state: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[VersionStatus, _Mapping]]] = ...) -> None: ...

class ModelIndex(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelIndexEntry]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelIndexEntry, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class Preprocessing(_message.Message):
    __slots__ = ("color_mode", "height", "width", "resize", "normalize")
    COLOR_MODE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    color_mode: str
    height: int
    width: int
    resize: str
    normalize: str
    def __init__(self, color_mode: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., resize: _Optional[str] = ..., normalize: _Optional[str] = ...) -> None: ...

class Quality(_message.Message):
    __slots__ = ("dataset", "split", "samples", "metrics", "per_class", "variants", "notes")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class PerClassEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class VariantsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    split: str
    samples: int
    metrics: _containers.ScalarMap[str, float]
    per_class: _containers.ScalarMap[str, float]
    variants: _containers.ScalarMap[str, float]
    notes: str
    def __init__(self, dataset: _Optional[str] = ..., split: _Optional[str] = ..., samples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., per_class: _Optional[_Mapping[str, float]] = ..., variants: _Optional[_Mapping[str, float]] = ..., notes: _Optional[str] = ...) -> None: ...

class AnomalyThreshold(_message.Message):
    __slots__ = ("metric", "percentile", "value", "false_positive_rate")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FALSE_POSITIVE_RATE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    percentile: float
    value: float
    false_positive_rate: float
    def __init__(self, metric: _Optional[str] = ..., percentile: _Optional[float] = ..., value: _Optional[float] = ..., false_positive_rate: _Optional[float] = ...) -> None: ...

class ModelMetadata(_message.Message):
    __slots__ = ("name", "version", "versions", "task", "state", "provider", "description", "inputs", "outputs", "preprocessing", "labels", "quality", "anomaly", "ood_model", "parameters", "created_at", "spec")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_FIELD_NUMBER: _ClassVar[int]
    OOD_MODEL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    task: str
    state: str
    provider: str
    description: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    preprocessing: Preprocessing
    labels: _containers.RepeatedScalarFieldContainer[str]
    quality: Quality
    anomaly: AnomalyThreshold
    ood_model: str
    parameters: int
    created_at: str
    spec: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., task: _Optional[str] = ..., state: _Optional[str] = ..., provider: _Optional[str] = ..., description: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ..., quality: _Optional[_Union[Quality, _Mapping]] = ..., anomaly: _Optional[_Union[AnomalyThreshold, _Mapping]] = ..., ood_model: _Optional[str] = ..., parameters: _Optional[int] = ..., created_at: _Optional[str] = ..., spec: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
