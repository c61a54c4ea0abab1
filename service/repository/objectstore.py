"""A model repository at a URI (``s3://bucket/prefix``, ``gs://``, ``az://``), read through fsspec
(`service.storage`).

Each poll lists the prefix once. A version is the objects under ``<prefix>/<name>/<version>/``; its fingerprint
is every object's ETag and size, so model.json is read again only when an object changed. A version counts as
uploaded once model.json is there and every file its `files` lists is too: until then it is incomplete and is
never loaded. Loading downloads the listed files into a local cache folder, checks each sha256, and hands the
folder to the same loader as a local repository, golden-set gate included.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pixelserve.modelspec import FILE_NAME, MODEL_FILE, NAME_PATTERN, SPEC_FILE

from ..storage import open_filesystem, redact
from .disk import INCOMPLETE, VERSION_DIR, DiskVersion, Fingerprint, Scan, VersionRejected, parse_spec, verify_files
from .store import StoreUnavailable

log = logging.getLogger(__name__)

VERIFIED = ".verified"  # written last into a cache folder whose files all matched their digests

Objects = dict[str, tuple[str, tuple[object, ...]]]  # file name -> (object path, (etag, size))


def _token(info: dict[str, Any]) -> tuple[object, ...]:
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") or info.get("mtime")
    return (str(tag), info.get("size"))


class ObjectStore:
    settles = False  # complete only once every digest matches (see `_describe`), so never half-read

    def __init__(self, uri: str, cache_dir: Path) -> None:
        self.display = redact(uri)
        self.fs, self.root = open_filesystem(uri, "model repository")
        self.cache = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
        self._objects: dict[tuple[str, int], Objects] = {}

    # -- listing -----------------------------------------------------------------------------------------

    def _list(self) -> dict[str, dict[str, Any]]:
        try:
            return self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:  # each backend raises its own: connection, permission, throttling
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None

    def check(self, allow_empty: bool) -> None:
        try:
            listing = self._list()
        except StoreUnavailable as exc:
            if allow_empty:
                return
            raise ValueError(f"model repository {self.display} cannot be listed: {exc}") from None
        if not listing and not allow_empty:
            raise ValueError(f"model repository {self.display} does not exist or holds no objects "
                             "(--allow-empty-repository true to start anyway)")  # fmt: skip

    def _group(self, listing: dict[str, dict[str, Any]]) -> dict[tuple[str, int], Objects]:
        groups: dict[tuple[str, int], Objects] = {}
        prefix = self.root + "/"
        for path, info in listing.items():
            parts = path[len(prefix) :].split("/") if path.startswith(prefix) else []
            if len(parts) != 3 or info.get("type", "file") != "file":
                continue
            name, version, file = parts
            if NAME_PATTERN.match(name) and VERSION_DIR.match(version) and FILE_NAME.match(file):
                groups.setdefault((name, int(version)), {})[file] = (path, _token(info))
        return groups

    def scan(self, known: Scan) -> Scan:
        groups = self._group(self._list())
        found: Scan = {}
        for (name, version), objects in sorted(groups.items()):
            fingerprint = Fingerprint(
                objects[MODEL_FILE][1] if MODEL_FILE in objects else None,
                objects[SPEC_FILE][1] if SPEC_FILE in objects else None,
                tuple(sorted((f, *t) for f, (_, t) in objects.items() if f not in (MODEL_FILE, SPEC_FILE))),
            )
            previous = known.get(name, {}).get(version)
            if previous is not None and previous.fingerprint == fingerprint:
                found.setdefault(name, {})[version] = previous
            else:
                found.setdefault(name, {})[version] = self._describe(name, version, objects, fingerprint)
        self._objects = groups
        self._forget(groups)
        return found

    def _describe(self, name: str, version: int, objects: Objects, fingerprint: Fingerprint) -> DiskVersion:
        digest = hashlib.sha256(repr(fingerprint).encode()).hexdigest()[:16]
        path = self.cache / name / str(version) / digest
        if SPEC_FILE not in objects:
            return DiskVersion(name, version, path, fingerprint, None, f"{INCOMPLETE}: no {SPEC_FILE} yet")
        try:
            text = self.fs.cat_file(objects[SPEC_FILE][0])
        except FileNotFoundError:  # deleted since the listing
            return DiskVersion(name, version, path, fingerprint, None, f"{INCOMPLETE}: no {SPEC_FILE} yet")
        except Exception as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None
        try:
            spec = parse_spec(text, name, version)
        except VersionRejected as exc:
            return DiskVersion(name, version, path, fingerprint, None, str(exc))
        if not spec.files:
            problem = (f"{SPEC_FILE} lists no file digests (files): a version in an object store needs them, so "
                       "that a half-uploaded one is never served; write it with ModelSpec.write")  # fmt: skip
            return DiskVersion(name, version, path, fingerprint, None, problem)
        missing = sorted(set(spec.files) - set(objects))
        if missing:
            problem = f"{INCOMPLETE}: {', '.join(missing)} not there yet"
            return DiskVersion(name, version, path, fingerprint, None, problem)
        return DiskVersion(name, version, path, fingerprint, spec)

    # -- the local cache ---------------------------------------------------------------------------------

    def fetch(self, version: DiskVersion) -> Path:
        target, spec = version.path, version.spec
        if spec is None:
            raise VersionRejected(version.problem)
        if (target / VERIFIED).is_file():
            return target
        objects = self._objects.get((version.name, version.version), {})
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        started, size = time.perf_counter(), 0
        try:
            for file in (SPEC_FILE, *spec.files):
                if file not in objects:
                    raise VersionRejected(f"{INCOMPLETE}: {file} is no longer there")
                try:
                    self.fs.get_file(objects[file][0], str(staging / file))
                except FileNotFoundError:
                    raise VersionRejected(f"upload changed: {file} was removed while downloading") from None
                except Exception as exc:
                    raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None
                size += (staging / file).stat().st_size
            if parse_spec((staging / SPEC_FILE).read_bytes(), version.name, version.version) != spec:
                raise VersionRejected(f"upload changed: {SPEC_FILE} was replaced while downloading")
            verify_files(staging, spec)
            (staging / VERIFIED).write_text(f"{self.display}\n")
            try:
                staging.rename(target)
            except OSError:  # another worker of this server finished the same version first
                if not (target / VERIFIED).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for other in target.parent.iterdir():  # earlier uploads of this version number
            if other != target and not other.name.startswith("."):
                shutil.rmtree(other, ignore_errors=True)
        log.info("fetched %s version %d from %s: %.1f MB in %.0f ms", version.name, version.version, self.display,
                 size / 1e6, (time.perf_counter() - started) * 1000)  # fmt: skip
        return target

    def _forget(self, groups: dict[tuple[str, int], Objects]) -> None:
        """Drop cached versions the store no longer holds."""
        if not self.cache.is_dir():
            return
        for model_dir in self.cache.iterdir():
            for version_dir in model_dir.iterdir() if model_dir.is_dir() else ():
                if version_dir.name.isdigit() and (model_dir.name, int(version_dir.name)) not in groups:
                    shutil.rmtree(version_dir, ignore_errors=True)
