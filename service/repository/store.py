"""Where the model repository lives: a local folder, or a prefix in an object store (`objectstore`).

Both answer the same three questions for the repository's version policy: is it usable at start-up (`check`),
which versions are there now (`scan`), and which local folder holds one version whole and checked (`fetch`).
The loader, the golden-set gate and hot reload do not know which store they read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import disk
from .disk import DiskVersion, Scan

if TYPE_CHECKING:
    from ..observe.metrics import Metrics
    from ..settings import Settings

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The store could not be listed or read just now; what is serving keeps serving."""


class Store(Protocol):
    display: str  # for logs and messages: never holds credentials
    # A changed version waits one more scan before it loads: a folder's files may be half-copied. An object
    # store's versions are proven whole by their digests, and a PUT is atomic, so they need not wait.
    settles: bool

    def check(self, allow_empty: bool) -> None:
        """Start-up: raise ValueError naming the repository when it cannot be what the server serves from."""

    def scan(self, known: Scan) -> Scan:
        """Blocking: the versions there now; `known` versions whose fingerprint did not change are reused.
        Raises StoreUnavailable."""

    def fetch(self, version: DiskVersion) -> Path:
        """Blocking: a local folder holding the whole version, every file checked against model.json's
        digests. Raises VersionRejected (incomplete or altered files) or StoreUnavailable."""


class LocalStore:
    settles = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.display = str(root.resolve())

    def check(self, allow_empty: bool) -> None:
        if not self.root.is_dir() and not allow_empty:
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise ValueError(f"model repository {self.display} {what} (--allow-empty-repository true to start anyway)")

    def scan(self, known: Scan) -> Scan:
        if not self.root.is_dir():
            log.debug("model repository %s does not exist yet", self.display)
        return disk.scan(self.root, known)

    def fetch(self, version: DiskVersion) -> Path:
        if version.spec is not None:
            disk.verify_files(version.path, version.spec)
        return version.path


def open_store(settings: Settings) -> Store:
    """The store the settings name; ValueError when its scheme cannot be read here."""
    location = settings.model_repository
    if isinstance(location, Path):
        return LocalStore(location)
    from .objectstore import ObjectStore  # fsspec only when a URI is used

    return ObjectStore(location, settings.model_cache_dir)


class Reachability:
    """The store's reachability as a metric and one log line per change, not one per failed poll."""

    def __init__(self, display: str, metrics: Metrics) -> None:
        self._display = display
        self._metrics = metrics
        self._down_since: str | None = None
        metrics.repository_reached(True)

    def reached(self) -> None:
        if self._down_since is not None:
            log.warning("model repository %s is reachable again", self._display)
            self._down_since = None
        self._metrics.repository_up.set(1)

    def failed(self, reason: str, serving: int) -> None:
        self._metrics.repository_reached(False)
        if self._down_since is None:
            log.error("model repository %s is unreachable (%s); serving the %d version(s) loaded, retrying",
                      self._display, reason, serving)  # fmt: skip
            self._down_since = reason
