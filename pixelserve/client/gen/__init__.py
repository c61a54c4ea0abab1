"""Generated from proto/ by `python -m pixelserve.service.grpc.codegen` (grpcio-tools 1.85.1).

POOL holds every descriptor generated here, apart from protobuf's default pool (see the codegen module).
"""

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor

GENERATOR_VERSION = "1.85.1"
POOL = descriptor_pool.DescriptorPool()


def require(file: FileDescriptor) -> None:
    """A file of protobuf's own (google/protobuf/struct.proto) that a generated one imports: into POOL, once."""
    try:
        POOL.FindFileByName(file.name)
    except KeyError:
        POOL.AddSerializedFile(file.serialized_pb)
