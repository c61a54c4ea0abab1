"""Generated from proto/ by `python -m pixelserve.service.grpc.codegen` (grpcio-tools 1.85.1).

POOL holds every descriptor generated here, apart from protobuf's default pool (see the codegen module).
"""

from google.protobuf import descriptor_pool

GENERATOR_VERSION = "1.85.1"
POOL = descriptor_pool.DescriptorPool()
