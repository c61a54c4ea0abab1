"""Batch scoring (`pixelserve score`): many images through the same core path as the server, in resumable shards.

sources (what to read) -> job/manifest (the shards and what is finished) -> an engine (local core, Ray actors
holding cores, or a running server over gRPC) -> scorer (decode per image, batched core calls, rows) -> sinks
(shard files, then the assembled output and the errors file). Inputs, outputs and the work directory may be
local or in an object store (location: any fsspec URI, s3:// included).
"""
