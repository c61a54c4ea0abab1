"""The standard ``process_*`` and ``python_*`` metrics, for one server process or for all of its workers.

One process: prometheus-client's own collectors in the server's registry (process, python_info, GC). Several
workers (multiprocess mode): the server's processes are summed (memory, CPU seconds, open descriptors; the
earliest start time): the supervisor, its children (workers still loading included) and any pid that names a
worker's metric files, so a dashboard or an OOM alert sees the whole server whichever worker answers the
scrape. ``python_info`` is the same in every worker; the per-process GC counters are left out (they would be
one worker's).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

WORKER_FILE = re.compile(r"_(\d+)\.db$")
SUPERVISOR_ENV = "PIXELSERVE_SUPERVISOR_PID"  # set in each worker by the supervisor (process/workers.py)
EARLIEST = {"process_start_time_seconds"}
SAME = {"process_max_fds"}  # a limit, not an amount: the same for every worker


def register_standard(registry: CollectorRegistry) -> None:
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def register_workers(registry: CollectorRegistry, directory: str | Path) -> None:
    registry.register(WorkerProcesses(directory))
    PlatformCollector(registry=registry)


def _children(pid: int) -> list[int]:
    """A process's children, from /proc (Linux, like the process collector itself)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerProcesses(Collector):
    """``process_*`` summed over the live workers whose metric files are in `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def pids(self) -> list[int]:
        found = {int(m.group(1)) for p in self.directory.glob("*.db") if (m := WORKER_FILE.search(p.name))}
        if (supervisor := os.environ.get(SUPERVISOR_ENV, "")).isdigit():
            found |= {int(supervisor), *_children(int(supervisor))}
        return sorted(pid for pid in found if _alive(pid))

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for pid in self.pids():
            for metric in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                if metric.name not in merged:
                    merged[metric.name] = metric
                    continue
                into = merged[metric.name]
                for index, sample in enumerate(metric.samples):
                    old = into.samples[index]
                    value = (min if metric.name in EARLIEST else max if metric.name in SAME else sum)(
                        (old.value, sample.value)
                    )
                    into.samples[index] = old._replace(value=value)
        return list(merged.values())
