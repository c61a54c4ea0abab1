"""The built wheel: one top-level import package, `pixelserve`, with service and training inside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import pixelserve

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "pixelserve", "service", "training", "proto")


def _build(source: Path, out: Path) -> set[str]:
    """`pip wheel .` (no network: the venv's setuptools builds it) -> the names inside the wheel."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("pixelserve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _copy_sources(target: Path, *, without: tuple[str, ...] = ()) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        if name in without:
            continue
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, target / name)
    return target


def _top_level(names: set[str]) -> set[str]:
    return {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    source = _copy_sources(tmp_path_factory.mktemp("src"))
    return _build(source, tmp_path_factory.mktemp("wheel"))


def test_the_only_top_level_package_is_pixelserve(wheel_names: set[str]) -> None:
    assert _top_level(wheel_names) == {"pixelserve"}


def test_service_training_and_generated_protobuf_live_under_pixelserve(wheel_names: set[str]) -> None:
    for module in (
        "pixelserve/cli.py",
        "pixelserve/modelspec.py",
        "pixelserve/service/core/core.py",
        "pixelserve/client/gen/pixelserve/v1/pixelserve_pb2_grpc.py",
        "pixelserve/service/grpc/gen/inference/grpc_service_pb2.py",
        "pixelserve/service/grpc/gen/pixelserve/v1/pixelserve_pb2_grpc.py",
        "pixelserve/training/recipes.py",
    ):
        assert module in wheel_names, module


def test_the_package_says_it_is_typed_and_carries_the_one_version(wheel_names: set[str]) -> None:
    """PEP 561's marker, the generated stubs of the client, and the version pixelserve/__init__.py writes."""
    assert "pixelserve/py.typed" in wheel_names
    assert "pixelserve/client/gen/pixelserve/v1/pixelserve_pb2.pyi" in wheel_names
    assert f"pixelserve-{pixelserve.__version__}.dist-info/METADATA" in wheel_names


def test_version_flag_prints_the_package_version() -> None:
    out = subprocess.run([sys.executable, "-m", "pixelserve", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"pixelserve {pixelserve.__version__}"


def test_playground_files_ship_as_package_data(wheel_names: set[str]) -> None:
    static = {n for n in wheel_names if n.startswith("pixelserve/service/rest/playground_static/")}
    assert {Path(n).suffix for n in static} >= {".html", ".js", ".css"}


def test_a_tree_without_training_builds_a_serving_wheel(tmp_path: Path) -> None:
    """The serving image copies no training/: the package list must follow the folders that exist."""
    names = _build(_copy_sources(tmp_path / "src", without=("training",)), tmp_path / "wheel")
    assert _top_level(names) == {"pixelserve"}
    assert "pixelserve/service/core/core.py" in names
    assert not any(n.startswith("pixelserve/training/") for n in names)


def test_uvicorn_is_bounded_above_while_connections_subclass_its_private_protocol() -> None:
    """rest/connections.py subclasses uvicorn's HttpToolsProtocol, which may change in any release: the bound
    is raised by hand after the slow-client tests pass on the next uvicorn."""
    from importlib.metadata import version

    import tomllib
    from packaging.requirements import Requirement

    serve = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    (uvicorn,) = [Requirement(r) for r in serve if Requirement(r).name == "uvicorn"]
    assert any(spec.operator == "<" for spec in uvicorn.specifier)
    assert uvicorn.specifier.contains(version("uvicorn"))  # the tests run against a version inside the bound
    assert "HttpToolsProtocol" in (ROOT / "service" / "rest" / "connections.py").read_text()
