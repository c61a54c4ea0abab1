"""The gRPC adapter: our task API, the KServe V2 API, health and reflection on one grpc.aio server."""
