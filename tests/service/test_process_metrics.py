"""The standard process metrics and the build info on /metrics of a real server: one process, and two workers
whose memory and CPU add up whichever worker answers the scrape."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import onnxruntime as ort
from prometheus_client.parser import text_string_to_metric_families

import pixelserve
from tests.service.rest_support import server_process
from tests.service.test_workers import children


def _value(exposition: str, name: str) -> float:
    (match,) = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", exposition, re.MULTILINE)
    return float(match)


def _rss(pid: int) -> float:
    """Resident memory in bytes, as the kernel counts it now."""
    (line,) = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")]
    return float(line.split()[1]) * 1024


def test_one_process_exports_process_python_and_build_info(model_repository: Path, tmp_path: Path) -> None:
    with server_process(model_repository, tmp_path / "server.log") as server:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        rss = _rss(server.process.pid)
    assert abs(_value(text, "process_resident_memory_bytes") - rss) < 0.25 * rss
    assert _value(text, "process_cpu_seconds_total") > 0 and _value(text, "process_open_fds") > 0
    assert "python_info{" in text and "python_gc_collections_total" in text
    (build,) = [f for f in text_string_to_metric_families(text) if f.name == "pixelserve_build_info"]
    (sample,) = build.samples
    assert sample.value == 1
    assert sample.labels == {"version": pixelserve.__version__, "onnxruntime": ort.__version__,
                             "provider": "CPUExecutionProvider"}  # fmt: skip


def test_with_workers_process_metrics_add_up_over_the_server_processes(model_repository: Path, tmp_path: Path) -> None:
    """The supervisor and both workers, whichever worker answers and even while the other is still loading."""
    with server_process(model_repository, tmp_path / "server.log", "--workers", "2") as server:
        workers = children(server.process.pid)
        assert len(workers) == 2
        each = [_rss(pid) for pid in (server.process.pid, *workers)]
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        after = [_rss(pid) for pid in (server.process.pid, *workers)]
    total = _value(text, "process_resident_memory_bytes")
    low, high = min(sum(each), sum(after)), max(sum(each), sum(after))
    assert 0.8 * low < total < 1.2 * high and total > 1.5 * max(after)
    assert text.count("pixelserve_build_info{") == 1
    assert "python_info{" in text
