"""Regenerate `service/grpc/gen/` and `pixelserve/client/gen/` from `proto/`:
``python -m pixelserve.service.grpc.codegen``.

The generated code is committed so installs need no grpcio-tools; a test regenerates into a temporary directory
and compares, so the committed code cannot drift from the protos.

Two copies, one per side: the server imports `pixelserve.service.grpc.gen`, the client `pixelserve.client.gen`.
The client then depends on nothing under `pixelserve.service`, whose packages are free to import serving-only
dependencies (FastAPI, onnxruntime) and to be reorganised without breaking a ``pip install 'pixelserve[client]'``;
and the server's two dozen importers of its copy stay as they are. Each copy has its own private pool, so a
process that holds both (``pixelserve score --server``) registers every symbol once per pool.

Two rewrites make the output importable as a sub-package and safe to share a process with tritonclient:
imports between generated modules become package-relative, and every file registers in the private descriptor
pool of its copy (e.g. `pixelserve.service.grpc.gen.POOL`) instead of protobuf's default pool — tritonclient
registers the same ``inference.*`` symbols there, and a second registration would fail with "duplicate symbol".
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from importlib import metadata, resources
from pathlib import Path

from grpc_tools import protoc

REPOSITORY = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPOSITORY / "proto"
GEN_DIR = Path(__file__).resolve().parent / "gen"
CLIENT_GEN_DIR = REPOSITORY / "pixelserve" / "client" / "gen"
GENERATOR = "grpcio-tools"
# Where the generated modules are imported from (sets their classes' __module__).
GEN_PACKAGE = "pixelserve.service.grpc.gen"
CLIENT_GEN_PACKAGE = "pixelserve.client.gen"
TARGETS = {GEN_DIR: GEN_PACKAGE, CLIENT_GEN_DIR: CLIENT_GEN_PACKAGE}

PACKAGE_INIT = '''"""Generated from proto/ by `python -m pixelserve.service.grpc.codegen` ({generator} {version}).

POOL holds every descriptor generated here, apart from protobuf's default pool (see the codegen module).
"""

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor

GENERATOR_VERSION = "{version}"
POOL = descriptor_pool.DescriptorPool()


def require(file: FileDescriptor) -> None:
    """A file of protobuf's own (google/protobuf/struct.proto) that a generated one imports: into POOL, once."""
    try:
        POOL.FindFileByName(file.name)
    except KeyError:
        POOL.AddSerializedFile(file.serialized_pb)
'''


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(root.rglob("*.proto"))


def _relative_import(module_package: tuple[str, ...], target_package: tuple[str, ...]) -> str:
    """The `from` part that reaches target_package from a module inside module_package."""
    common = 0
    for mine, theirs in zip(module_package, target_package, strict=False):
        if mine != theirs:
            break
        common += 1
    dots = "." * (len(module_package) - common + 1)
    return dots + ".".join(target_package[common:])


def _rewrite(text: str, module_package: tuple[str, ...], top_packages: set[str], gen_package: str) -> str:
    def fix_import(match: re.Match[str]) -> str:
        target = tuple(match.group(1).split("."))
        if target[0] not in top_packages:
            return match.group(0)
        return f"from {_relative_import(module_package, target)} import {match.group(2)}"

    text = re.sub(r"^from ([\w.]+) import (\w+_pb2\b)", fix_import, text, flags=re.MULTILINE)
    # Message classes name their module; make it the importable one so pickling finds them.
    text = re.sub(
        r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')([\w.]+)(')", rf"\g<1>{gen_package}.\g<2>\g<3>", text
    )
    if "_descriptor_pool.Default()" in text:
        pool_import = f"from {'.' * (len(module_package) + 1)} import POOL as _POOL\n"
        text = text.replace("_descriptor_pool.Default()", "_POOL")
        # protobuf's own files a proto imports (well-known types) go into the private pool before it.
        own = re.findall(r"^from google\.protobuf import \w+_pb2 as (\w+)$", text, flags=re.MULTILINE)
        if own:
            pool_import = pool_import.replace("_POOL\n", "_POOL, require as _require\n")
            required = "".join(f"_require({alias}.DESCRIPTOR)\n" for alias in own)
            text = text.replace("\nDESCRIPTOR = _POOL.", f"\n{required}DESCRIPTOR = _POOL.", 1)
        marker = "# @@protoc_insertion_point(imports)\n"
        text = text.replace(marker, pool_import + marker)
    return text


def generate(target: Path, root: Path = PROTO_ROOT, gen_package: str = GEN_PACKAGE) -> list[Path]:
    """Write the complete generated package, importable as `gen_package`, into target (replaced); returns the
    files written."""
    protos = proto_files(root)
    include = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        args = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *(str(p.relative_to(root)) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {[str(p) for p in protos]}")
        top_packages = {p.relative_to(root).parts[0] for p in protos}
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        version = metadata.version(GENERATOR)
        (target / "__init__.py").write_text(PACKAGE_INIT.format(generator=GENERATOR, version=version))
        written = [target / "__init__.py"]
        for source in sorted(out.rglob("*")):
            if source.is_dir():
                continue
            relative = source.relative_to(out)
            package = relative.parts[:-1]
            for depth in range(1, len(package) + 1):
                init = target.joinpath(*package[:depth], "__init__.py")
                if not init.exists():
                    init.parent.mkdir(parents=True, exist_ok=True)
                    init.write_text("")
                    written.append(init)
            destination = target / relative
            destination.write_text(_rewrite(source.read_text(), package, top_packages, gen_package))
            written.append(destination)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="one package, written here (replaced); default: both copies")
    parser.add_argument("--package", default=GEN_PACKAGE, help="the import name of --out's package")
    args = parser.parse_args(argv)
    targets = {args.out: args.package} if args.out else TARGETS
    for out, package in targets.items():
        files = generate(out, gen_package=package)
        print(f"wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
