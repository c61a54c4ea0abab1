"""The stores' shared contract without a network: model.json's file digests, checked before a version loads
from a local folder too, and URIs that never carry a credential into a log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from pixelserve.modelspec import MODEL_FILE, SPEC_FILE, ModelSpec, sha256_file
from pixelserve.service.repository import disk
from pixelserve.service.repository.disk import VersionRejected
from pixelserve.service.repository.store import LocalStore, open_store
from pixelserve.service.settings import Settings
from pixelserve.service.storage import redact

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "models" / "mnist-classifier" / "3"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    shutil.copytree(COMMITTED, tmp_path / "models" / "mnist-classifier" / "3")
    return tmp_path / "models"


def _only_version(repository: Path) -> disk.DiskVersion:
    (versions,) = disk.scan(repository, {}).values()
    (version,) = versions.values()
    return version


def test_write_records_the_digest_of_every_file_but_model_json(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(COMMITTED, tmp_path / "v"))
    spec = ModelSpec.load(folder / SPEC_FILE).model_copy(update={"files": {}}).write(folder)
    assert set(spec.files) == {p.name for p in folder.iterdir()} - {SPEC_FILE}
    assert spec.files[MODEL_FILE] == sha256_file(folder / MODEL_FILE)
    assert ModelSpec.load(folder / SPEC_FILE).files == spec.files


def test_a_local_version_whose_graph_is_not_the_one_recorded_is_refused(repository: Path) -> None:
    version = _only_version(repository)
    assert LocalStore(repository).fetch(version) == version.path
    shutil.copy(ROOT / "models" / "mnist-classifier-int8" / "2" / MODEL_FILE, version.path / MODEL_FILE)
    with pytest.raises(VersionRejected, match=r"model.onnx is not the file model.json records \(sha256\)"):
        LocalStore(repository).fetch(version)


def test_a_local_version_missing_a_recorded_file_is_refused(repository: Path) -> None:
    version = _only_version(repository)
    (version.path / "golden.npz").unlink()
    with pytest.raises(VersionRejected, match=r"golden\.npz is missing"):
        LocalStore(repository).fetch(version)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"../model.onnx": "0" * 64}, "is not a file of the version"),
        ({MODEL_FILE: "0" * 64, SPEC_FILE: "0" * 64}, "is not a file of the version"),
        ({MODEL_FILE: "ABC"}, "is not a lowercase hex sha256"),
        ({"golden.npz": "0" * 64}, "files must include model.onnx"),
    ],
)
def test_model_json_files_must_name_plain_files_with_sha256(files: dict[str, str], problem: str) -> None:
    data = ModelSpec.load(COMMITTED / SPEC_FILE).model_dump(mode="json")
    with pytest.raises(ValidationError, match=problem):
        ModelSpec.model_validate({**data, "files": files})


def test_a_uri_in_a_log_carries_no_credentials() -> None:
    assert redact("s3://AKIAKEY:secret@bucket/prefix") == "s3://bucket/prefix"
    assert redact("s3://bucket/prefix") == "s3://bucket/prefix"


def test_a_folder_is_a_local_store_and_file_uris_are_folders(tmp_path: Path) -> None:
    assert isinstance(open_store(Settings(model_repository=tmp_path)), LocalStore)
    assert Settings(model_repository=f"file://{tmp_path}").model_repository == tmp_path
    assert Settings(model_repository="s3://bucket/prefix").model_repository == "s3://bucket/prefix"
