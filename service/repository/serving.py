"""What is serving: one record per model and one per version, each holding all there is to know about it.

A `ServedVersion` is a loaded, warmed session with its batcher and its request counters. Requests hold a
lease on it while they use it, so a swap waits for them before it is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from pixelserve.modelspec import ModelSpec

from ..core.batching import DynamicBatcher
from ..core.runtime import ModelRunner
from ..core.stats import RequestStats
from ..core.types import ModelState
from ..observe.drift import DriftWindow
from .disk import DiskVersion, Fingerprint


class ServedVersion:
    def __init__(self, disk: DiskVersion, spec: ModelSpec, runners: list[ModelRunner], batcher: DynamicBatcher) -> None:
        self.name = disk.name
        self.version = disk.version
        self.path = disk.path  # the local folder it was loaded from
        self.fingerprint = disk.fingerprint
        self.spec = spec
        self.runners = runners
        self.batcher = batcher
        self.requests = RequestStats()
        self.drift: DriftWindow | None = None  # set when drift monitoring is on and model.json has a baseline
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def provider(self) -> str:
        return self.runners[0].provider

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


@dataclass
class VersionRecord:
    """One version: its files as last scanned and what serving made of them."""

    disk: DiskVersion
    loading: bool = False
    draining: int = 0  # retired copies of this version still finishing their requests
    rejected: Fingerprint | None = None  # files that failed to load (not retried until they change) ...
    reason: str = ""  # ... and why

    @property
    def was_rejected(self) -> bool:
        return self.rejected is not None and self.rejected == self.disk.fingerprint


@dataclass
class ModelRecord:
    """One model: its versions on disk, the one taking traffic, and whether it was unloaded on purpose."""

    name: str
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    served: ServedVersion | None = None
    unloaded: bool = False
    pinned: int | None = None

    def status(self, record: VersionRecord) -> tuple[ModelState, str]:
        """A version's state and the reason, derived from its record and the model's."""
        if record.loading:
            return "loading", ""
        if self.served is not None and self.served.version == record.disk.version:
            if record.was_rejected:
                return "ready", f"serving the files loaded before; the current ones were rejected: {record.reason}"
            return "ready", ""
        if record.draining:
            return "unloading", "finishing in-flight requests"
        if record.was_rejected:
            return "failed", record.reason
        if record.disk.spec is None:
            return "failed", record.disk.problem
        if self.unloaded:
            return "unavailable", "unloaded"
        if self.pinned is not None:
            return "unavailable", f"pinned to version {self.pinned}"
        if self.served is not None:
            return "unavailable", f"version {self.served.version} is served"
        return "unavailable", "not loaded"

    def policy_order(self) -> list[int]:
        """Versions to try, best first: the pinned one alone, else newest first."""
        return [self.pinned] if self.pinned is not None else sorted(self.versions, reverse=True)
