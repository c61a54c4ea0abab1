"""The model repository on disk and the versions it currently serves.

Layout ``<root>/<name>/<version>/{model.onnx, model.json}``. Per model one version takes traffic, chosen by
the version policy: the pinned version from ``settings.pinned_versions``, else the newest version that loads.

Hot reload: a background task rescans every ``reload_interval_s`` (mtime + size fingerprints; a file must be
unchanged over two scans before it is loaded, so half-copied files are not). A new or changed version is
loaded, checked against its model.json and warmed up in a worker thread while the current one keeps serving;
only then is it swapped in, in one assignment on the event loop. The replaced version drains: requests that
already hold it finish, then its batcher finishes its queue and closes. A version that fails to load is
marked failed (with the reason, logged once per fingerprint) and the current one keeps serving.

Request names never touch the filesystem: they are looked up in the last scan, which only lists directory
names matching ``NAME_PATTERN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pixelserve.modelspec import NAME_PATTERN, ModelSpec
from pixelserve.service.batching import BatcherStats, DynamicBatcher
from pixelserve.service.errors import ModelNotFound, ModelNotReady
from pixelserve.service.loading import Fingerprint, VersionRejected, load_version, read_spec
from pixelserve.service.metrics import Metrics
from pixelserve.service.runtime import ModelRunner, SessionFactory
from pixelserve.service.settings import Settings
from pixelserve.service.types import ModelInfo, ModelRef, ModelState, ModelStatus

log = logging.getLogger(__name__)

VERSION_DIR = re.compile(r"^[1-9][0-9]{0,8}$")

Key = tuple[str, int]


@dataclass
class DiskVersion:
    """A version directory as last scanned; `problem` says why its model.json cannot be used."""

    name: str
    version: int
    path: Path
    fingerprint: Fingerprint
    spec: ModelSpec | None
    problem: str = ""


class ServedVersion:
    """A loaded, warmed version with its batcher. Requests hold a lease while they use it, so a swap can wait
    for them before closing it."""

    def __init__(self, disk: DiskVersion, spec: ModelSpec, runner: ModelRunner, batcher: DynamicBatcher):
        self.name = disk.name
        self.version = disk.version
        self.fingerprint = disk.fingerprint
        self.spec = spec
        self.runner = runner
        self.batcher = batcher
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def provider(self) -> str:
        return self.runner.provider

    @property
    def stats(self) -> BatcherStats:
        return self.batcher.stats

    @contextlib.contextmanager
    def lease(self) -> Iterator[ServedVersion]:
        self.in_flight += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def drain(self, grace_s: float) -> None:
        """Let lease holders finish (up to grace_s), then finish the queue and stop the batcher."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s)
        await self.batcher.close()


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ModelNotFound(f"invalid model name {name!r}: names match {NAME_PATTERN.pattern}")


class ModelRepository:
    def __init__(self, settings: Settings, metrics: Metrics, factory: SessionFactory | None = None) -> None:
        self.settings = settings
        self.root = settings.model_repository
        self._metrics = metrics
        self._factory = factory or SessionFactory(settings)
        self._disk: dict[str, dict[int, DiskVersion]] = {}
        self._served: dict[str, ServedVersion] = {}
        self._failed: dict[Key, tuple[Fingerprint, str]] = {}
        self._loading: set[Key] = set()
        self._retiring: dict[asyncio.Task[None], Key] = {}  # drains in progress
        self._unloaded: set[str] = set()
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._scanned = False  # before the first scan, an unknown name may just not be listed yet

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Scan and load everything the policy picks, then poll for changes if hot reload is on."""
        if not self.root.is_dir():
            log.warning("model repository %s does not exist; serving no models until it does", self.root)
        await self.refresh()
        for name, version in self.settings.pinned_versions.items():
            if version not in self._disk.get(name, {}):
                log.warning("pinned version %d of model %s is not in the repository", version, name)
        if self.settings.hot_reload:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="repository-poll")

    async def close(self) -> None:
        """Stop polling and drain every served version."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        async with self._lock:
            for name in list(self._served):
                self._retire(self._served.pop(name))
        await asyncio.gather(*self._retiring)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                await self.refresh(settled_only=True)
            except Exception:  # the poller must outlive any one bad scan
                log.exception("model repository refresh failed")

    # -- scanning and the version policy -----------------------------------------------------------------

    def _scan(self) -> dict[str, dict[int, DiskVersion]]:
        """Blocking: list version directories; model.json is re-read only when its fingerprint changed."""
        found: dict[str, dict[int, DiskVersion]] = {}
        if not self.root.is_dir():
            return found
        for model_dir in self.root.iterdir():
            if not (model_dir.is_dir() and NAME_PATTERN.match(model_dir.name)):
                continue
            name = model_dir.name
            versions: dict[int, DiskVersion] = {}
            for path in model_dir.iterdir():
                if not (path.is_dir() and VERSION_DIR.match(path.name)):
                    continue
                version = int(path.name)
                fingerprint = Fingerprint.of(path)
                known = self._disk.get(name, {}).get(version)
                if known is not None and known.fingerprint == fingerprint:
                    versions[version] = known
                    continue
                try:
                    versions[version] = DiskVersion(name, version, path, fingerprint, read_spec(path, name, version))
                except VersionRejected as exc:
                    versions[version] = DiskVersion(name, version, path, fingerprint, None, str(exc))
            if versions:
                found[name] = versions
        return found

    async def refresh(self, *, settled_only: bool = False) -> None:
        """Rescan and bring every model to its policy's version. With settled_only (the poller), a version
        whose files changed since the previous scan waits for the next one."""
        async with self._lock:
            previous = {key: d.fingerprint for key, d in self._all_disk()}
            self._disk = await asyncio.to_thread(self._scan)
            self._scanned = True
            for name in sorted(set(self._disk) | set(self._served)):
                if name not in self._unloaded:
                    await self._reconcile(name, previous if settled_only else None)
            self._publish_states()

    def _all_disk(self) -> Iterator[tuple[Key, DiskVersion]]:
        for name, versions in self._disk.items():
            for version, disk in versions.items():
                yield (name, version), disk

    def _policy_order(self, name: str) -> list[int]:
        pinned = self.settings.pinned_versions.get(name)
        return [pinned] if pinned is not None else sorted(self._disk.get(name, {}), reverse=True)

    async def _reconcile(self, name: str, previous: dict[Key, Fingerprint] | None) -> None:
        versions = self._disk.get(name, {})
        served = self._served.get(name)
        for version in self._policy_order(name):
            disk = versions.get(version)
            if disk is None:
                continue
            is_served = served is not None and served.version == version
            if is_served and served.fingerprint == disk.fingerprint:
                return
            if previous is not None and previous.get((name, version)) != disk.fingerprint:
                return  # still changing: keep what is served, look again next scan
            failed = self._failed.get((name, version))
            if (failed is None or failed[0] != disk.fingerprint) and await self._load(disk):
                return
            if is_served:
                return  # its new files are broken: keep serving the copy in memory, not an older version
        if served is not None and served.version not in versions:
            del self._served[name]
            self._retire(served)
            log.info("model %s version %d left the repository; unloading it", name, served.version)

    async def _load(self, disk: DiskVersion) -> bool:
        """Load, check and warm one version off the event loop, then swap it in. False when rejected."""
        key = (disk.name, disk.version)
        if disk.spec is None:
            self._reject(disk, disk.problem)
            return False
        self._loading.add(key)
        self._publish_states()
        started = time.perf_counter()
        try:
            runner = await asyncio.to_thread(load_version, disk.path, disk.spec, self._factory, self.settings)
        except Exception as exc:
            self._reject(disk, str(exc) if isinstance(exc, VersionRejected) else f"unexpected error: {exc!r}")
            return False
        finally:
            self._loading.discard(key)
        s = self.settings
        batcher = DynamicBatcher(
            runner,
            model=disk.name,
            version=disk.version,
            max_batch_size=s.max_batch_size,
            max_queue_delay_s=s.max_queue_delay_ms / 1000,
            max_queue_size=s.max_queue_size,
            timeout_s=s.request_timeout_s,
            metrics=self._metrics,
        )
        old = self._served.get(disk.name)
        self._served[disk.name] = ServedVersion(disk, disk.spec, runner, batcher)
        self._failed.pop(key, None)
        log.info(
            "serving %s version %d on %s (loaded in %.0f ms%s)",
            disk.name,
            disk.version,
            runner.provider,
            (time.perf_counter() - started) * 1000,
            f", replacing version {old.version}" if old else "",
        )
        if old is not None:
            self._retire(old)
        return True

    def _reject(self, disk: DiskVersion, reason: str) -> None:
        key = (disk.name, disk.version)
        if self._failed.get(key) != (disk.fingerprint, reason):
            log.error("model %s version %d rejected: %s", disk.name, disk.version, reason)
        self._failed[key] = (disk.fingerprint, reason)

    def _retire(self, served: ServedVersion) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(served.drain(self.settings.drain_grace_s))
        self._retiring[task] = (served.name, served.version)

        def done(_: asyncio.Task[None]) -> None:
            del self._retiring[task]
            self._publish_states()

        task.add_done_callback(done)
        return task

    # -- explicit control --------------------------------------------------------------------------------

    async def load(self, name: str) -> None:
        """Load (or retry) a model by its policy, even one unloaded before; raises if nothing could load."""
        _check_name(name)
        self._unloaded.discard(name)
        for key in [k for k in self._failed if k[0] == name]:
            del self._failed[key]
        await self.refresh()
        self.resolve(ModelRef(name))

    async def unload(self, name: str) -> None:
        """Stop serving a model until `load`; returns once its in-flight requests have finished."""
        _check_name(name)
        if name not in self._disk and name not in self._served:
            raise ModelNotFound(f"model {name!r} is not in the repository")
        async with self._lock:
            self._unloaded.add(name)
            served = self._served.pop(name, None)
            drain = self._retire(served) if served is not None else None
            self._publish_states()
        if drain is not None:
            await drain

    # -- lookups -----------------------------------------------------------------------------------------

    def resolve(self, ref: ModelRef) -> ServedVersion:
        """The served version for a request, or ModelNotFound / ModelNotReady saying why not."""
        _check_name(ref.name)
        if not self._scanned:
            raise ModelNotReady("the model repository is still being scanned")
        versions = self._disk.get(ref.name, {})
        served = self._served.get(ref.name)
        if served is None and not versions:
            raise ModelNotFound(f"model {ref.name!r} is not in the repository")
        if served is not None and ref.version in (None, served.version):
            return served
        if ref.version is None:
            states = "; ".join(
                f"version {v} {state}" + (f": {reason}" if reason else "")
                for v, (state, reason) in sorted(self._states(ref.name).items(), reverse=True)
            )
            raise ModelNotReady(f"model {ref.name!r} has no version ready ({states})")
        if ref.version in versions:
            state, reason = self._status(versions[ref.version])
            raise ModelNotReady(f"model {ref.name!r} version {ref.version} is {state}: {reason}")
        raise ModelNotFound(f"model {ref.name!r} has no version {ref.version} (versions: {sorted(versions)})")

    @contextlib.contextmanager
    def lease(self, ref: ModelRef) -> Iterator[ServedVersion]:
        """Resolve and hold a version for the duration of one request (a swap waits for holders)."""
        with self.resolve(ref).lease() as served:
            yield served

    def served(self) -> list[ServedVersion]:
        return list(self._served.values())

    def all_ready(self) -> bool:
        """Every model in the repository that was not unloaded on purpose has a version serving."""
        return all(name in self._served for name in self._disk if name not in self._unloaded)

    def info(self, ref: ModelRef) -> ModelInfo:
        _check_name(ref.name)
        versions = self._disk.get(ref.name, {})
        served = self._served.get(ref.name)
        if served is not None and ref.version in (None, served.version):
            return ModelInfo(served.spec, "ready", served.provider, sorted(versions))
        if ref.version is None:
            self.resolve(ref)  # raises the reason no version is ready
        disk = versions.get(ref.version) if ref.version is not None else None
        if disk is None:
            raise ModelNotFound(f"model {ref.name!r} has no version {ref.version} (versions: {sorted(versions)})")
        if disk.spec is None:
            raise ModelNotReady(f"model {ref.name!r} version {ref.version} is failed: {disk.problem}")
        return ModelInfo(disk.spec, self._status(disk)[0], "", sorted(versions))

    def _status(self, disk: DiskVersion) -> tuple[ModelState, str]:
        key = (disk.name, disk.version)
        served = self._served.get(disk.name)
        failed = self._failed.get(key)
        if key in self._loading:
            return "loading", ""
        if served is not None and served.version == disk.version:
            if failed is not None and failed[0] == disk.fingerprint:
                return "ready", f"serving the files loaded before; the current ones were rejected: {failed[1]}"
            return "ready", ""
        if key in self._retiring.values():
            return "unloading", "finishing in-flight requests"
        if failed is not None and failed[0] == disk.fingerprint:
            return "failed", failed[1]
        if disk.spec is None:
            return "failed", disk.problem
        if disk.name in self._unloaded:
            return "unavailable", "unloaded"
        pinned = self.settings.pinned_versions.get(disk.name)
        if pinned is not None:
            return "unavailable", f"pinned to version {pinned}"
        if served is not None:
            return "unavailable", f"version {served.version} is served"
        return "unavailable", "not loaded"

    def _states(self, name: str) -> dict[int, tuple[ModelState, str]]:
        return {v: self._status(d) for v, d in self._disk.get(name, {}).items()}

    def index(self) -> list[ModelStatus]:
        return [
            ModelStatus(name, version, state, reason)
            for name in sorted(self._disk)
            for version, (state, reason) in sorted(self._states(name).items())
        ]

    def _publish_states(self) -> None:
        for status in self.index():
            self._metrics.set_model_state(status.name, status.version, status.state)
