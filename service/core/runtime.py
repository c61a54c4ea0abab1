"""onnxruntime sessions with an honest execution provider.

onnxruntime-gpu silently falls back to CPU when CUDA cannot load, so the provider we *asked* for is not
necessarily the one that runs. This module asks, then checks `session.get_providers()[0]`:

- ``auto``: CUDA when it is both installed and actually works on a device, else CPU. The first failing probe
  is remembered by the factory, so later loads go straight to CPU and the CUDA error is logged once.
- ``cuda`` / ``tensorrt``: the user asked for a GPU; if it is not what runs, loading fails with a clear reason
  instead of quietly serving from CPU.
- ``cpu``: CPU only; CUDA is never touched (no library-loading noise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pixelserve.modelspec import ModelSpec

from ..errors import ModelNotReady
from ..settings import Settings

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
MAX_WARMUP_RUNS = 9  # batch sizes 1, 2, 4, ..., 256 at most

Feeds = dict[str, np.ndarray]
RunFn = Callable[[Feeds], Feeds]


class ModelRunner:
    """One loaded session: call it with input feeds, get every output by name."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.provider: str = session.get_providers()[0]
        self.output_names: list[str] = [o.name for o in session.get_outputs()]

    def __call__(self, feeds: Feeds) -> Feeds:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))


class BoundRunner(ModelRunner):
    """A runner that goes through onnxruntime's I/O binding: inputs are copied to the session's device once,
    outputs are allocated there and copied back once, without the per-run staging of `session.run`. It pays
    on CUDA; on CPU it is the same computation (which is how it is tested without a GPU)."""

    def __init__(self, session: ort.InferenceSession, device: str, device_id: int) -> None:
        super().__init__(session)
        self.device = device
        self.device_id = device_id

    def __call__(self, feeds: Feeds) -> Feeds:
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self.output_names:
            binding.bind_output(name, self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu(), strict=True))


class SessionFactory:
    """Creates sessions for every model of one server with the settings' device and thread choices."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cuda_usable: bool | None = None if settings.device == "auto" else settings.device != "cpu"
        self._dlls_preloaded = False

    def _options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.intra_op_threads
        options.inter_op_num_threads = self.settings.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # A spinning intra-op pool keeps cores busy between batches, stealing them from the event loop.
        spin = "1" if self.settings.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return options

    def _preload_cuda_dlls(self) -> None:
        """Load the CUDA/cuDNN libraries shipped as pip packages, if any; harmless when there are none."""
        if self._dlls_preloaded:
            return
        self._dlls_preloaded = True
        try:
            ort.preload_dlls()
        except Exception as exc:  # absent or partial CUDA install: the session probe below decides
            log.debug("onnxruntime.preload_dlls failed: %s", exc)

    def _providers(self) -> list[Any]:
        device_options = {"device_id": self.settings.cuda_device_id}
        cuda = (CUDA, device_options)
        if self.settings.device == "cpu" or self._cuda_usable is False:
            return [CPU]
        if self.settings.device == "tensorrt":
            return [(TENSORRT, device_options), cuda, CPU]
        return [cuda, CPU]

    def _runner(self, session: ort.InferenceSession) -> ModelRunner:
        provider = session.get_providers()[0]
        binding = self.settings.io_binding
        if binding == "on" or (binding == "auto" and provider != CPU):
            return BoundRunner(session, _device_of(provider), self.settings.cuda_device_id if provider != CPU else 0)
        return ModelRunner(session)

    def create(self, model_path: Path) -> ModelRunner:
        """A session on the wanted provider, or ModelNotReady saying why the wanted GPU is not what runs."""
        device = self.settings.device
        if device == "auto" and self._cuda_usable is None and not nvidia_driver_present():
            # Asked to try CUDA without a GPU, onnxruntime-gpu prints a screen of red library errors: look first.
            self._cuda_usable = False
            log.info("no NVIDIA GPU driver found: serving every model on %s", CPU)
        if device in ("cuda", "tensorrt") or (device == "auto" and self._cuda_usable is not False):
            available = ort.get_available_providers()
            if CUDA not in available:
                if device != "auto":
                    raise ModelNotReady(
                        f"device={device} was requested but this onnxruntime build has no CUDA provider "
                        f"(available: {', '.join(available)}); install onnxruntime-gpu or use device=cpu"
                    )
                self._cuda_usable = False
            else:
                self._preload_cuda_dlls()
        session = ort.InferenceSession(str(model_path), self._options(), providers=self._providers())
        runner = self._runner(session)
        wanted = {"cuda": CUDA, "tensorrt": TENSORRT}.get(device)
        if wanted is not None and runner.provider != wanted:
            raise ModelNotReady(
                f"device={device} was requested but onnxruntime runs this model on {runner.provider}: "
                f"{wanted} could not start on device {self.settings.cuda_device_id} (see the onnxruntime "
                "log above for the missing library); use device=auto to allow CPU"
            )
        if device == "auto" and self._cuda_usable is None:
            self._cuda_usable = runner.provider == CUDA
            if not self._cuda_usable:
                log.warning("CUDA is installed but not usable; serving every model on %s", runner.provider)
        return runner


def nvidia_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver at all, asked quietly (no library is loaded)."""
    return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def _device_of(provider: str) -> str:
    return "cpu" if provider == CPU else "cuda"


def warm_up(run: RunFn, spec: ModelSpec, max_batch_size: int) -> int:
    """Run zero images at each power-of-two batch size up to max_batch_size, so the first real requests do
    not pay for allocator growth and kernel selection. Returns the number of runs (bounded)."""
    top = min(max_batch_size, 2 ** (MAX_WARMUP_RUNS - 1))
    sizes = [2**i for i in range(MAX_WARMUP_RUNS) if 2**i < top] + [top]
    _, height, width, channels = spec.input.shape
    for size in sizes:
        run({spec.input.name: np.zeros((size, height, width, channels), dtype=spec.input.dtype)})
    return len(sizes)


def runtime_line() -> tuple[int, str]:
    """What `pixelserve serve` says first: which onnxruntime distribution is installed and its providers.

    onnxruntime and onnxruntime-gpu install the same module, so only the distributions' metadata tells them apart;
    with both installed the module is whichever pip unpacked last, which is worth a warning and the fix.
    """
    from importlib import metadata

    found = []
    for distribution in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{distribution} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            continue
    providers = ", ".join(ort.get_available_providers())
    if len(found) > 1:
        return logging.WARNING, (
            f"runtime: {' and '.join(found)} are both installed and share one module (onnxruntime {ort.__version__}, "
            f"providers {providers}); keep one: pip uninstall -y onnxruntime onnxruntime-gpu, then install "
            "pixelserve[serve] (CPU) or pixelserve[gpu] (CUDA)"
        )
    name = found[0] if found else f"onnxruntime {ort.__version__} (no distribution metadata)"
    return logging.INFO, f"runtime: {name}, providers {providers}"
