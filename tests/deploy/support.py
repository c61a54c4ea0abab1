"""Paths and helpers shared by the deployment tests."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.prerequisites import require

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "pixelserve.json"


def tool(name: str) -> str:
    """A command-line tool installed by the [dev] extra: beside this interpreter first (an unactivated venv),
    then on PATH. Missing is a failure in CI and a skip elsewhere."""
    found = Path(sys.executable).with_name(name)
    path = str(found) if found.exists() else shutil.which(name)
    require(path is not None, f"{name} is missing: pip install -e '.[dev]'")
    return str(path)


def dashboard_queries(dashboard: dict) -> Iterator[str]:
    """Every PromQL the dashboard runs: panel targets and the query variables."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]
