"""Print the pip requirements of the serving image: pyproject.toml's dependencies and the named extras.

pyproject.toml stays the one list of dependencies: the image installs these requirements and then the project
itself with ``--no-deps``. The CPU image takes ``serve``, the GPU image ``serve,gpu``. ``gpu`` replaces the
CPU ``onnxruntime`` that ``serve`` lists with ``onnxruntime-gpu``: both install the one ``onnxruntime`` module,
so asking pip for both would leave whichever it unpacked last (the README's "CPU or GPU runtime").

Usage: ``python3 requirements.py pyproject.toml serve,gpu > requirements.txt``
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

CPU_RUNTIME = re.compile(r"^onnxruntime(?=[\s<>=!~;\[]|$)")  # `onnxruntime`, not `onnxruntime-gpu`


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    if "gpu" in extras:
        wanted = [r for r in wanted if not CPU_RUNTIME.match(r)]
    return list(dict.fromkeys(wanted))  # httpx and pillow are in more than one extra


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    pyproject, extras = argv
    print("\n".join(requirements(Path(pyproject), [e.strip() for e in extras.split(",") if e.strip()])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
