"""The Open Inference Protocol (KServe V2, as Triton speaks it), decided once for every transport.

What a request means and what the answer holds live here, on plain Python and numpy values: metadata, the
Triton-format model configuration, statistics, the repository index, readiness, input validation into the
core's types, output selection and the classification extension. The REST adapter (JSON and the binary tensor
extension) and the gRPC adapter (protobuf) only encode these values, so both transports answer the same
request with the same values, field by field.
"""
