"""What is on disk: version directories, their fingerprints and model.json, read without loading anything.

Layout ``<root>/<name>/<version>/{model.onnx, model.json}``. Only directory names matching ``NAME_PATTERN``
and plain version numbers are listed, so request names never touch the filesystem: they are looked up in
the last scan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from pixelserve.modelspec import MODEL_FILE, NAME_PATTERN, OUTPUT_ERROR, SPEC_FILE, ModelSpec, sha256_file

VERSION_DIR = re.compile(r"^[1-9][0-9]{0,8}$")


INCOMPLETE = "upload incomplete"  # how the reason of a version still being uploaded to a store begins


class VersionRejected(Exception):
    """This version cannot be served; the message is the reason shown in the model index and logs."""


@dataclass(frozen=True)
class Fingerprint:
    """What changes when a version's files do, without hashing them: mtime and size of model.onnx and model.json
    on disk; in an object store, every object's ETag and size (`others` for the files beside those two)."""

    model: tuple[object, ...] | None
    spec: tuple[object, ...] | None
    others: tuple[tuple[object, ...], ...] = ()

    @classmethod
    def of(cls, path: Path) -> Fingerprint:
        return cls(_stat(path / MODEL_FILE), _stat(path / SPEC_FILE))


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class DiskVersion:
    """A version directory as last scanned; `problem` says why its model.json cannot be used."""

    name: str
    version: int
    path: Path
    fingerprint: Fingerprint
    spec: ModelSpec | None
    problem: str = ""


def read_spec(path: Path, name: str, version: int) -> ModelSpec:
    """model.json of one version directory, checked against the directory's own name and number."""
    if not (path / MODEL_FILE).is_file():
        raise VersionRejected(f"{MODEL_FILE} is missing")
    try:
        text = (path / SPEC_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise VersionRejected(f"{SPEC_FILE} is missing") from exc
    except OSError as exc:
        raise VersionRejected(f"{SPEC_FILE} is unreadable: {exc}") from exc
    return parse_spec(text, name, version)


def parse_spec(text: bytes, name: str, version: int) -> ModelSpec:
    """model.json's bytes, checked against the version directory's own name and number."""
    try:
        spec = ModelSpec.model_validate_json(text)
    except (ValidationError, ValueError) as exc:
        raise VersionRejected(f"{SPEC_FILE} is invalid: {exc}") from exc
    if spec.name != name or spec.version != version:
        raise VersionRejected(f"{SPEC_FILE} names {spec.name} version {spec.version}, not its directory")
    if spec.task != "classify" and not spec.has_output(OUTPUT_ERROR):
        raise VersionRejected(f"a {spec.task} model must output {OUTPUT_ERROR!r}; the service reports it")
    return spec


Scan = dict[str, dict[int, DiskVersion]]


def verify_files(path: Path, spec: ModelSpec) -> None:
    """Every file model.json lists is in the directory with its recorded sha256 (none listed: nothing to check)."""
    for file, digest in spec.files.items():
        target = path / file
        if not target.is_file():
            raise VersionRejected(f"{file} is missing ({SPEC_FILE} lists it in files)")
        if sha256_file(target) != digest:
            raise VersionRejected(f"{file} is not the file {SPEC_FILE} records (sha256)")


def scan(root: Path, known: Scan) -> Scan:
    """Blocking: list version directories; model.json is re-read only when its fingerprint changed."""
    found: Scan = {}
    if not root.is_dir():
        return found
    for model_dir in root.iterdir():
        if not (model_dir.is_dir() and NAME_PATTERN.match(model_dir.name)):
            continue
        name = model_dir.name
        versions: dict[int, DiskVersion] = {}
        for path in model_dir.iterdir():
            if not (path.is_dir() and VERSION_DIR.match(path.name)):
                continue
            version = int(path.name)
            fingerprint = Fingerprint.of(path)
            previous = known.get(name, {}).get(version)
            if previous is not None and previous.fingerprint == fingerprint:
                versions[version] = previous
                continue
            try:
                versions[version] = DiskVersion(name, version, path, fingerprint, read_spec(path, name, version))
            except VersionRejected as exc:
                versions[version] = DiskVersion(name, version, path, fingerprint, None, str(exc))
        if versions:
            found[name] = versions
    return found
