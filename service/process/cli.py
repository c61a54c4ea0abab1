"""``pixelserve serve`` / ``python -m pixelserve.service``: settings from flags and environment, then a server.

Every Settings field is a kebab-case flag (``--max-batch-size 16``) and a ``PIXELSERVE_*`` variable; a flag
wins over the environment. ``--help`` lists them all with their defaults.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

from pixelserve.commandline import parse

from ..core.runtime import runtime_line
from ..observe.metrics import Metrics
from ..repository.repository import check_root
from ..security.keys import KeyRing
from ..security.tls import ServerTls
from ..settings import Settings
from ..wiring import serving_core
from .server import serve
from .workers import follow_supervisor, supervise, worker_index

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when asked for or, with "auto", when installed (uvicorn[standard] brings it); else asyncio's."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 after a clean shutdown (or --help), 2 for bad flags or values, 1 if serving failed."""
    settings = parse(Settings, argv, "serve")
    if isinstance(settings, int):
        return settings
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        print(f"pixelserve serve: invalid log level {settings.log_level!r}: use debug, info, warning or error",
              file=sys.stderr)  # fmt: skip
        return 2
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if worker_index() is None:  # once per server, not once per worker
        logging.getLogger("pixelserve.service.process.cli").log(*runtime_line())
    try:  # what the settings name must be usable, or start-up stops here (before any worker starts)
        check_root(settings)
        keys, tls = KeyRing.from_settings(settings), ServerTls.from_settings(settings)
    except ValueError as exc:
        return _refused(exc)
    if settings.workers > 1 and worker_index() is None:
        return supervise(settings, list(sys.argv[1:] if argv is None else argv))
    if worker_index() is not None:
        follow_supervisor()
    if settings.switch_interval_ms > 0:  # the batch thread hands results to a busy event loop this often
        sys.setswitchinterval(settings.switch_interval_ms / 1000)
        logging.getLogger("pixelserve.service.process.cli").info(
            "GIL switch interval %.2f ms", sys.getswitchinterval() * 1000
        )
    metrics = Metrics()
    try:
        core = serving_core(settings, metrics)
    except ValueError as exc:  # a payload log or tracing exporter the settings cannot have
        return _refused(exc)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(settings.event_loop)) as runner:
            runner.run(serve(core, settings, metrics, keys=keys, tls=tls))
    except Exception:
        logging.getLogger("pixelserve.service.process.cli").exception("serving failed")
        return 1
    return 0


def _refused(problem: ValueError) -> int:
    print(f"pixelserve serve: {problem}", file=sys.stderr)
    return 2
