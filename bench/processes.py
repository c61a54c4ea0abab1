"""The two servers of the side-by-side benchmark as context managers: pixelserve and the Triton anchor.

The Triton anchor comes from the `[bench]` extra installed in its own virtual environment (its wheels pin
numpy<2 and protobuf<5, which the serving install cannot share): nvidia-pytriton ships tritonserver and the
Python backend, tritonclient ships perf_analyzer. Nothing is installed at run time: the model repository and
a private backend directory are written to a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
LOCALHOST = "localhost"  # the name the benchmark's certificates carry (and 127.0.0.1)
TRITON_TYPES = {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32", "int64": "TYPE_INT64"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """The benchmark's own CA and a server certificate for localhost (made by `make_tls`)."""

    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path) -> Tls:
    """A throwaway CA and server certificate, with `cryptography` (installed by [dev])."""
    from tests.tls_support import Authority

    folder.mkdir(parents=True, exist_ok=True)
    ca = Authority.create(folder, "bench-ca")
    cert, key = ca.issue(folder, "bench-server")
    return Tls(ca.pem, cert, key)


@dataclass(frozen=True)
class Endpoints:
    name: str
    http: str  # host:port
    grpc: str
    tls: Tls | None = None  # set: HTTPS and gRPC over TLS (Triton: gRPC only, it has no HTTPS)
    https: bool = False


def wait_ready(http: str, process: subprocess.Popen, timeout_s: float = 180.0, ca: Path | None = None) -> None:
    """`ca`: the server speaks HTTPS with a certificate this CA signed."""
    deadline = time.monotonic() + timeout_s
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    scheme = "https" if ca is not None else "http"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{scheme}://{http}/v2/health/ready", timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"server on {http} not ready after {timeout_s:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Runs `pixelserve` from another installed copy (pip install --target DIR): the editable install's import hook
# is taken out first, or it would win over sys.path.
FROM_COPY = (
    "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
    "sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'pixelserve'; runpy.run_module('pixelserve', "
    "run_name='__main__', alter_sys=True)"
)


@contextlib.contextmanager
def pixelserve(repository: Path, extra_args: list[str], log: Path, *, name: str = "pixelserve",
               installed: Path | None = None, env: dict[str, str] | None = None,
               tls: Tls | None = None, python: Path | None = None,
               cwd: Path = ROOT) -> Iterator[Endpoints]:  # fmt: skip
    """`pixelserve serve` with its defaults (plus `extra_args`) on free loopback ports; `installed`: a folder
    holding another version of the package (an earlier commit, for before/after runs); `tls`: on both ports;
    `python` and `cwd`: another interpreter (a virtualenv with other dependency versions) and the tree it runs."""
    http, grpc = free_port(), free_port()
    if tls is not None:
        extra_args = [f"--tls-cert-file={tls.cert}", f"--tls-key-file={tls.key}", *extra_args]
    interpreter = str(python or sys.executable)
    launcher = [interpreter, "-c", FROM_COPY, str(installed)] if installed else [interpreter, "-m", "pixelserve"]
    command = [*launcher, "serve", f"--model-repository={repository}",
               "--http-host=127.0.0.1", f"--http-port={http}", f"--grpc-port={grpc}", "--hot-reload=false",
               "--log-level=warning", *extra_args]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                   env={**os.environ, **(env or {})})  # fmt: skip
    try:
        host = LOCALHOST if tls is not None else "127.0.0.1"
        wait_ready(f"{host}:{http}", process, ca=tls.ca if tls else None)
        yield Endpoints(name, f"{host}:{http}", f"{host}:{grpc}", tls, https=tls is not None)
    finally:
        stop(process)


@dataclass(frozen=True)
class BenchEnv:
    """The virtual environment holding the [bench] extra."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        (found,) = (self.root / "lib").glob("python3.*/site-packages")
        return found

    @property
    def perf_analyzer(self) -> Path:
        return self.root / "bin" / "perf_analyzer"

    def python_version(self) -> str:
        return subprocess.check_output([self.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                       text=True).strip()  # fmt: skip

    def libpython_dir(self) -> str:
        return subprocess.check_output(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"], text=True
        ).strip()

    def library_path(self) -> str:
        """perf_analyzer wants libcudart.so.12 (nvidia-cuda-runtime-cu12) even on CPU; tritonserver and its
        stub want pytriton's bundled libraries and the interpreter's libpython."""
        site = self.site_packages
        parts = [site / "nvidia" / "cuda_runtime" / "lib", site / "nvidia_pytriton.libs", Path(self.libpython_dir())]
        return os.pathsep.join([*(str(p) for p in parts), os.environ.get("LD_LIBRARY_PATH", "")])

    def check(self) -> None:
        for path in (self.python, self.perf_analyzer, self.site_packages / "pytriton" / "tritonserver"):
            if not path.exists():
                raise SystemExit(
                    f"{path} is missing: install the Triton anchor with\n"
                    f"  python3 -m venv {self.root} && {self.root}/bin/pip install '.[bench]'"
                )


def write_triton_repository(model_dir: Path, target: Path, env: BenchEnv, max_batch: int, delay_us: int) -> str:
    """A Triton repository with one Python-backend model that runs onnxruntime on `model_dir`'s ONNX file."""
    spec = ModelSpec.load(model_dir / SPEC_FILE)
    version_dir = target / spec.name / "1"
    version_dir.mkdir(parents=True)
    shutil.copy(model_dir / MODEL_FILE, version_dir / MODEL_FILE)
    shutil.copy(ROOT / "bench" / "triton_model.py", version_dir / "model.py")

    def tensors(specs: list) -> str:
        return ", ".join(
            f'{{ name: "{t.name}", data_type: {TRITON_TYPES[t.dtype]}, dims: {t.shape[1:] or [1]} }}' for t in specs
        )

    (target / spec.name / "config.pbtxt").write_text(
        f'name: "{spec.name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
        f"input [{tensors(spec.inputs)}]\noutput [{tensors(spec.outputs)}]\n"
        "instance_group [{ kind: KIND_CPU, count: 1 }]\n"
        f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}\n"
        f'parameters {{ key: "site_packages" value {{ string_value: "{env.site_packages}" }} }}\n'
        'parameters { key: "intra_op_threads" value { string_value: "1" } }\n'
    )
    return spec.name


def write_backend(env: BenchEnv, target: Path) -> Path:
    """Triton's Python backend with the stub built for the benchmark environment's Python."""
    server = env.site_packages / "pytriton" / "tritonserver"
    backend = target / "python"
    backend.mkdir(parents=True)
    for item in (server / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy(item, backend / item.name)
    shutil.copy(server / "python_backend_stubs" / env.python_version() / "triton_python_backend_stub", backend)
    return target


@contextlib.contextmanager
def triton(model_dir: Path, env: BenchEnv, workdir: Path, max_batch: int, delay_us: int,
           tls: Tls | None = None) -> Iterator[Endpoints]:  # fmt: skip
    """tritonserver on free loopback ports; `tls`: its gRPC port over TLS (Triton's HTTP has no TLS)."""
    repository = workdir / "triton-models"
    write_triton_repository(model_dir, repository, env, max_batch, delay_us)
    backends = write_backend(env, workdir / "triton-backends")
    http, grpc, metrics = free_port(), free_port(), free_port()
    binary = env.site_packages / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    command = [str(binary), f"--model-repository={repository}", f"--backend-directory={backends}",
               f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}", "--allow-metrics=false",
               "--log-verbose=0"]  # fmt: skip
    if tls is not None:
        command += ["--grpc-use-ssl=true", f"--grpc-server-cert={tls.cert}", f"--grpc-server-key={tls.key}",
                    f"--grpc-root-cert={tls.ca}"]  # fmt: skip
    process_env = {**os.environ, "LD_LIBRARY_PATH": env.library_path()}
    with (workdir / "tritonserver.log").open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=process_env)
    try:
        wait_ready(f"127.0.0.1:{http}", process)
        host = LOCALHOST if tls is not None else "127.0.0.1"
        yield Endpoints("triton", f"127.0.0.1:{http}", f"{host}:{grpc}", tls)
    finally:
        stop(process)
