"""The one seam for operations: access log, tracing, payload log, drift and request metrics are hooks around
the core's requests, registered once by the server wiring (service/wiring.py).

Two levels, because a transport request and a core request are not always one: a gRPC stream is one call
carrying many core requests.
- `opened(ctx)` / `closed(ctx)`: a transport request arrived / its answer went out (the edges call these).
- `started(call)` / `answered(call, result)` / `failed(call, error)`: one core request (the core calls these).

A hook that raises is logged and skipped: operations never fail a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import RequestContext
    from .core.calls import Call

log = logging.getLogger(__name__)

EVENTS = ("opened", "started", "answered", "failed", "closed")
# Called by the batcher's thread for each executed batch: (start_ns, end_ns, the requests' contexts, size);
# what it returns rides on each request's Completed (the tracing hook links spans with it).
BatchObserver = Callable[[int, int, Sequence[Any], int], Any]


class RequestHook:
    """Override the events you need; the others cost nothing (Hooks calls only overridden ones)."""

    def opened(self, ctx: RequestContext) -> None: ...
    def started(self, call: Call) -> None: ...
    def answered(self, call: Call, result: Any) -> None: ...
    def failed(self, call: Call, error: BaseException) -> None: ...
    def closed(self, ctx: RequestContext) -> None: ...

    on_batch: BatchObserver | None = None

    async def start(self, core: Any) -> None:
        """Called when `core` starts (background work such as drift's refresh)."""

    async def stop(self) -> None:
        """Called when the core closes: flush and release."""


def _fan_out(event: str, fns: list[Callable[..., None]]) -> Callable[..., None]:
    """One function calling each of `fns` in turn, a failing one logged and skipped."""

    def call(*args: Any) -> None:
        for fn in fns:
            try:
                fn(*args)
            except Exception:
                log.exception("operations hook %s.%s failed; the request goes on", type(fn.__self__).__name__, event)

    return call


def _overrides(hook: RequestHook, event: str) -> bool:
    return getattr(type(hook), event) is not getattr(RequestHook, event)


class Hooks:
    """The registered hooks, in order; each event calls only the hooks that implement it."""

    def __init__(self, hooks: Sequence[RequestHook] = ()) -> None:
        self.hooks = list(hooks)
        self._by_event = {event: [getattr(h, event) for h in self.hooks if _overrides(h, event)] for event in EVENTS}
        self.edge = bool(self._by_event["opened"] or self._by_event["closed"])  # the edges wrap requests at all
        observers = [h.on_batch for h in self.hooks if h.on_batch is not None]
        self.on_batch: BatchObserver | None = observers[0] if observers else None

        self.opened, self.started, self.answered, self.failed, self.closed = (
            _fan_out(event, self._by_event[event]) for event in EVENTS
        )

    async def start(self, core: Any) -> None:
        for hook in self.hooks:
            await hook.start(core)

    async def stop(self) -> None:
        for hook in reversed(self.hooks):
            try:
                await hook.stop()
            except Exception:
                log.exception("operations hook %s failed to stop", type(hook).__name__)
