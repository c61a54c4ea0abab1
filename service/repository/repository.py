"""The model repository: the versions on disk (`disk`), the version of each model that takes traffic
(`serving`), and the policy and hot reload that move one to the other.

Per model one version takes traffic, chosen by the version policy: the pinned version from
``settings.pinned_versions``, else the newest version that loads.

The versions come from a `Store`: a local folder, or a prefix in an object store whose versions are downloaded
whole into a local cache and checked against model.json's digests before loading (`store`, `objectstore`).
While the store cannot be reached, what is serving keeps serving.

Hot reload: a background task rescans every ``reload_interval_s`` (in a folder a file must be unchanged over two
scans before it is loaded, so half-copied files are not). A new or changed version is loaded, checked against its
model.json and warmed up in a worker thread while the current one keeps serving; only then is it swapped in,
in one assignment on the event loop. The replaced version drains: requests that already hold it finish, then
its batcher finishes its queue and closes. A version that fails to load is marked failed (with the reason,
logged once per fingerprint) and the current one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import onnxruntime as ort

from pixelserve.modelspec import NAME_PATTERN

from ..core.batching import DynamicBatcher
from ..core.runtime import SessionFactory
from ..core.types import ModelInfo, ModelRef, ModelStatus
from ..errors import ModelNotFound, ModelNotReady
from ..observe.drift import DriftWindow
from ..observe.metrics import Metrics
from ..settings import Settings
from . import disk
from .disk import INCOMPLETE, DiskVersion, Fingerprint, VersionRejected
from .gate import QUALITY_GATE
from .loading import load_version
from .serving import ModelRecord, ServedVersion, VersionRecord
from .store import LocalStore, Reachability, Store, StoreUnavailable, open_store

if TYPE_CHECKING:
    from ..hooks import BatchObserver

log = logging.getLogger(__name__)


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ModelNotFound(f"invalid model name {name!r}: names match {NAME_PATTERN.pattern}")


class ModelRepository:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        factory: SessionFactory | None = None,
        on_batch: BatchObserver | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self._on_batch = on_batch  # the operations hooks' (tracing's), handed to every batcher
        self.store = store or open_store(settings)
        self._reach = Reachability(self.store.display, metrics)
        self._metrics = metrics
        self._factory = factory or SessionFactory(settings)
        self._models: dict[str, ModelRecord] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._scanned = False  # before the first scan, an unknown name may just not be listed yet

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Scan and load everything the policy picks, then poll for changes if hot reload is on."""
        if isinstance(self.store, LocalStore) and not self.store.root.is_dir():
            log.warning("model repository %s does not exist; serving no models until it does", self.store.display)
        await self.refresh()
        for name, version in self.settings.pinned_versions.items():
            if version not in self._model(name).versions:
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
            for model in self._models.values():
                if model.served is not None:
                    self._retire(model, model.served)
                    model.served = None
        await asyncio.gather(*self._drains)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                await self.refresh(settled_only=True)
            except Exception:  # the poller must outlive any one bad scan
                log.exception("model repository refresh failed")

    # -- scanning and the version policy -----------------------------------------------------------------

    def _model(self, name: str) -> ModelRecord:
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = ModelRecord(name, pinned=self.settings.pinned_versions.get(name))
        return model

    def _apply_scan(self, found: disk.Scan) -> dict[tuple[str, int], Fingerprint]:
        """Bring the records up to date with a scan; returns the fingerprints they had before."""
        previous = {(name, v): r.disk.fingerprint for name, m in self._models.items() for v, r in m.versions.items()}
        for name in set(self._models) | set(found):
            model = self._model(name)
            on_disk = found.get(name, {})
            for version, found_version in on_disk.items():
                record = model.versions.get(version)
                if record is None:
                    model.versions[version] = VersionRecord(found_version)
                else:
                    record.disk = found_version
            for version in set(model.versions) - set(on_disk):
                del model.versions[version]
        return previous

    async def refresh(self, *, settled_only: bool = False) -> None:
        """Rescan and bring every model to its policy's version. With settled_only (the poller), a version
        whose files changed since the previous scan waits for the next one."""
        async with self._lock:
            known = {n: {v: r.disk for v, r in m.versions.items()} for n, m in self._models.items()}
            try:
                found = await asyncio.to_thread(self.store.scan, known)
            except StoreUnavailable as exc:
                self._reach.failed(str(exc), len(self.served()))
                self._scanned = True
                return
            self._reach.reached()
            previous = self._apply_scan(found)
            self._scanned = True
            for name in sorted(self._models):
                model = self._models[name]
                if not model.unloaded:
                    await self._reconcile(model, previous if settled_only else None)
            self._forget_empty()
            self._publish_states()

    def _forget_empty(self) -> None:
        for name in [n for n, m in self._models.items() if not m.versions and m.served is None and not m.unloaded]:
            del self._models[name]

    async def _reconcile(self, model: ModelRecord, previous: dict[tuple[str, int], Fingerprint] | None) -> None:
        served = model.served
        for version in model.policy_order():
            record = model.versions.get(version)
            if record is None:
                continue
            is_served = served is not None and served.version == version
            if is_served and served.fingerprint == record.disk.fingerprint:
                return
            changed = previous is not None and previous.get((model.name, version)) != record.disk.fingerprint
            if changed and self.store.settles:
                return  # still changing: keep what is served, look again next scan
            if not record.was_rejected and await self._load(model, record):
                return
            if is_served:
                return  # its new files are broken: keep serving the copy in memory, not an older version
        if served is not None and served.version not in model.versions:
            model.served = None
            self._retire(model, served)
            log.info("model %s version %d left the repository; unloading it", model.name, served.version)

    async def _load(self, model: ModelRecord, record: VersionRecord) -> bool:
        """Load, check and warm one version off the event loop, then swap it in. False when rejected."""
        found = record.disk
        if found.spec is None:
            self._reject(record, found.problem)
            return False
        record.loading = True
        self._publish_states()
        started = time.perf_counter()
        try:
            path = await asyncio.to_thread(self.store.fetch, found)
            if not isinstance(self.store, LocalStore):  # a download (or a verified copy already in the cache)
                self._metrics.repository_fetch.observe(time.perf_counter() - started)
            runners = await asyncio.to_thread(load_version, path, found.spec, self._factory, self.settings)
        except StoreUnavailable as exc:  # not the version's fault: try it again next poll
            self._reach.failed(str(exc), len(self.served()))
            return False
        except Exception as exc:
            self._reject(record, str(exc) if isinstance(exc, VersionRejected) else f"unexpected error: {exc!r}")
            return False
        finally:
            record.loading = False
        s = self.settings
        batcher = DynamicBatcher(
            runners,
            model=found.name,
            version=found.version,
            max_batch_size=s.max_batch_size,
            max_queue_delay_s=s.max_queue_delay_ms / 1000,
            max_queue_size=s.max_queue_size,
            timeout_s=s.request_timeout_s,
            policy=s.batch_policy,
            metrics=self._metrics.batch(found.name, found.version),
            on_batch=self._on_batch,
        )
        old = model.served
        model.served = ServedVersion(found, found.spec, runners, batcher)
        if s.drift_monitoring and found.spec.drift is not None:
            model.served.drift = DriftWindow(found.spec.drift, s.drift_window_s)
        record.rejected, record.reason = None, ""
        log.info(
            "serving %s version %d on %s (loaded in %.0f ms%s)",
            found.name,
            found.version,
            runners[0].provider,
            (time.perf_counter() - started) * 1000,
            f", replacing version {old.version}" if old else "",
        )
        self._metrics.served_on(ort.__version__, runners[0].provider)
        if old is not None:
            self._retire(model, old)
        return True

    def _reject(self, record: VersionRecord, reason: str) -> None:
        found = record.disk
        if reason.startswith(INCOMPLETE):  # not a bad version: one still arriving in the store
            if not (record.was_rejected and record.reason == reason):
                log.info("model %s version %d waits: %s", found.name, found.version, reason)
        elif not (record.was_rejected and record.reason == reason):
            log.error("model %s version %d rejected: %s", found.name, found.version, reason)
            kind = "quality_gate" if reason.startswith(QUALITY_GATE) else "invalid"
            self._metrics.version_rejected(found.name, kind)
        record.rejected, record.reason = found.fingerprint, reason

    def _retire(self, model: ModelRecord, served: ServedVersion) -> asyncio.Task[None]:
        record = model.versions.get(served.version)
        if record is not None:
            record.draining += 1
        task = asyncio.get_running_loop().create_task(served.drain(self.settings.drain_grace_s))
        self._drains.add(task)

        def done(_: asyncio.Task[None]) -> None:
            self._drains.discard(task)
            if record is not None:
                record.draining -= 1
            self._publish_states()

        task.add_done_callback(done)
        return task

    # -- explicit control --------------------------------------------------------------------------------

    async def load(self, name: str) -> None:
        """Load (or retry) a model by its policy, even one unloaded before; raises if nothing could load."""
        _check_name(name)
        model = self._models.get(name)
        if model is not None:
            model.unloaded = False
            for record in model.versions.values():
                record.rejected, record.reason = None, ""
        await self.refresh()
        self.resolve(ModelRef(name))

    async def unload(self, name: str) -> None:
        """Stop serving a model until `load`; returns once its in-flight requests have finished."""
        _check_name(name)
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} is not in the repository")
        async with self._lock:
            model.unloaded = True
            served, model.served = model.served, None
            drain = self._retire(model, served) if served is not None else None
            self._publish_states()
        if drain is not None:
            await drain

    # -- lookups -----------------------------------------------------------------------------------------

    def resolve(self, ref: ModelRef) -> ServedVersion:
        """The served version for a request, or ModelNotFound / ModelNotReady saying why not."""
        _check_name(ref.name)
        if not self._scanned:
            raise ModelNotReady("the model repository is still being scanned")
        model = self._models.get(ref.name)
        if model is None or (model.served is None and not model.versions):
            raise ModelNotFound(f"model {ref.name!r} is not in the repository")
        served = model.served
        if served is not None and ref.version in (None, served.version):
            return served
        if ref.version is None:
            states = "; ".join(
                f"version {v} {state}" + (f": {reason}" if reason else "")
                for v, (state, reason) in sorted(self._states(model).items(), reverse=True)
            )
            raise ModelNotReady(f"model {ref.name!r} has no version ready ({states})")
        record = model.versions.get(ref.version)
        if record is not None:
            state, reason = model.status(record)
            raise ModelNotReady(f"model {ref.name!r} version {ref.version} is {state}: {reason}")
        raise ModelNotFound(f"model {ref.name!r} has no version {ref.version} (versions: {sorted(model.versions)})")

    @contextlib.contextmanager
    def lease(self, ref: ModelRef) -> Iterator[ServedVersion]:
        """Resolve and hold a version for the duration of one request (a swap waits for holders)."""
        with self.resolve(ref).lease() as served:
            yield served

    def served(self) -> list[ServedVersion]:
        return [m.served for m in self._models.values() if m.served is not None]

    def all_ready(self) -> bool:
        """Every model in the repository that was not unloaded on purpose has a version serving, and the
        repository holds at least one model (unless `allow_empty_repository`): a pod with a wrong path must not
        take traffic, while one whose models were all unloaded through the API stays reachable to load them."""
        if not any(m.versions for m in self._models.values()) and not self.settings.allow_empty_repository:
            return False
        return all(m.served is not None for m in self._models.values() if m.versions and not m.unloaded)

    def info(self, ref: ModelRef) -> ModelInfo:
        _check_name(ref.name)
        model = self._models.get(ref.name)
        versions = sorted(model.versions) if model is not None else []
        served = model.served if model is not None else None
        if served is not None and ref.version in (None, served.version):
            return ModelInfo(served.spec, "ready", served.provider, versions, len(served.runners), served.path)
        if ref.version is None or model is None:
            self.resolve(ref)  # raises the reason no version is ready
        record = model.versions.get(ref.version) if model is not None else None
        if record is None:
            raise ModelNotFound(f"model {ref.name!r} has no version {ref.version} (versions: {versions})")
        if record.disk.spec is None:
            raise ModelNotReady(f"model {ref.name!r} version {ref.version} is failed: {record.disk.problem}")
        return ModelInfo(record.disk.spec, model.status(record)[0], "", versions, directory=record.disk.path)

    def _states(self, model: ModelRecord) -> dict[int, tuple[str, str]]:
        return {v: model.status(r) for v, r in model.versions.items()}

    def index(self) -> list[ModelStatus]:
        return [
            ModelStatus(name, version, *self._models[name].status(record))
            for name in sorted(self._models)
            for version, record in sorted(self._models[name].versions.items())
        ]

    def _publish_states(self) -> None:
        for status in self.index():
            self._metrics.set_model_state(status.name, status.version, status.state)


def check_root(settings: Settings) -> None:
    """Start-up's check: the repository can be read and exists, unless the settings allow starting without it."""
    open_store(settings).check(settings.allow_empty_repository)


__all__ = ["DiskVersion", "ModelRepository", "ServedVersion", "check_root"]
