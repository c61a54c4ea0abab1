"""The serving image's requirements come from pyproject's extras (deploy/docker/requirements.py): the CPU image's
`serve` has the CPU onnxruntime, the GPU image's `serve,gpu` has onnxruntime-gpu instead, never both."""

from __future__ import annotations

import importlib.util
import re
import sys

from tests.deploy.support import ROOT

PYPROJECT = ROOT / "pyproject.toml"
spec = importlib.util.spec_from_file_location("image_requirements", ROOT / "deploy" / "docker" / "requirements.py")
assert spec is not None and spec.loader is not None
image_requirements = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = image_requirements
spec.loader.exec_module(image_requirements)


def _names(requirements: list[str]) -> list[str]:
    return [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements]


def test_the_cpu_image_takes_onnxruntime_and_httpx() -> None:
    names = _names(image_requirements.requirements(PYPROJECT, ["serve"]))
    assert "onnxruntime" in names and "onnxruntime-gpu" not in names
    assert "httpx" in names  # `pixelserve verify --url` in the image
    assert len(names) == len(set(names))


def test_the_gpu_image_replaces_the_runtime_with_onnxruntime_gpu_and_its_cuda_wheels() -> None:
    requirements = image_requirements.requirements(PYPROJECT, ["serve", "gpu"])
    names = _names(requirements)
    assert "onnxruntime-gpu" in names and "onnxruntime" not in names
    (gpu,) = [r for r in requirements if r.startswith("onnxruntime-gpu")]
    assert "cuda" in gpu and "cudnn" in gpu  # onnxruntime-gpu's own extras: the CUDA runtime and cuDNN wheels
    cpu = _names(image_requirements.requirements(PYPROJECT, ["serve"]))
    assert sorted(set(names) - {"onnxruntime-gpu"}) == sorted(set(cpu) - {"onnxruntime"})  # nothing else differs


def test_the_command_line_takes_a_comma_list(capsys) -> None:
    assert image_requirements.main([str(PYPROJECT), "serve,gpu"]) == 0
    assert "onnxruntime-gpu[cuda,cudnn]" in capsys.readouterr().out
    assert image_requirements.main([str(PYPROJECT)]) == 2


# The lock files (deploy/docker/lock.sh): what the image really installs, pinned by hash.
LOCKS = ROOT / "deploy" / "docker" / "locks"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$")
IMAGE_PLATFORM = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
                  "platform_system": "Linux", "platform_machine": "x86_64", "platform_python_implementation": "CPython",
                  "implementation_name": "cpython", "os_name": "posix"}  # fmt: skip  # Debian bookworm's python3


def _lock(path) -> dict[str, tuple[str, int]]:
    """name -> (version, hashes) of the pins that apply to the image's platform."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name

    pins: dict[str, tuple[str, int]] = {}
    name = None
    for line in path.read_text().splitlines():
        if (match := PIN.match(line)) is not None:
            marker = match["marker"]
            name = None
            if marker is None or Marker(marker).evaluate(IMAGE_PLATFORM):
                name = canonicalize_name(match["name"])
                assert name not in pins, f"{path.name}: {name} pinned twice for the image's platform"
                pins[name] = (match["version"], 0)
        elif line.strip().startswith("--hash=sha256:") and name is not None:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def _flavours() -> list[str]:
    script = (ROOT / "deploy" / "docker" / "lock.sh").read_text()
    (listed,) = re.findall(r"^FLAVOURS=\((.*)\)$", script, re.MULTILINE)
    return re.findall(r'"([^"]+)"', listed)


def test_every_locked_flavour_pins_what_pyproject_asks_by_hash() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    flavours = _flavours()
    assert "serve,s3,otlp,otlp-grpc" in flavours and "serve,s3,gpu,otlp,otlp-grpc" in flavours
    for extras in flavours:
        path = LOCKS / f"{extras.replace(',', '-')}.txt"
        assert path.is_file(), f"no lock for EXTRAS={extras}: run deploy/docker/lock.sh"
        pins = _lock(path)
        for line in image_requirements.requirements(PYPROJECT, extras.split(",")):
            wanted = Requirement(line)
            name = canonicalize_name(wanted.name)
            assert name in pins, f"{path.name} lacks {wanted.name}: run deploy/docker/lock.sh"
            version, _ = pins[name]
            assert wanted.specifier.contains(version, prereleases=True), (
                f"{path.name} pins {name}=={version}, pyproject asks {wanted}: run deploy/docker/lock.sh"
            )
        assert all(hashes > 0 for _, hashes in pins.values()), "pip --require-hashes needs a hash for every pin"
        runtimes = {"onnxruntime", "onnxruntime-gpu"} & pins.keys()
        assert runtimes == ({"onnxruntime-gpu"} if "gpu" in extras.split(",") else {"onnxruntime"})


def test_the_compose_images_are_built_from_locked_extras() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    built = re.findall(r"^\s+EXTRAS: ([\w,-]+)", compose, re.MULTILINE)
    dockerfile_default = re.findall(r"^ARG EXTRAS=([\w,-]+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert built and dockerfile_default
    for extras in [*built, *dockerfile_default]:
        assert (LOCKS / f"{extras.replace(',', '-')}.txt").is_file(), f"EXTRAS={extras} has no lock file"
