"""Print the pip requirements of the serving image from pyproject.toml, with the onnxruntime flavour swapped.

pyproject.toml stays the one list of dependencies: the image installs these requirements and then the project
itself with ``--no-deps``. Only the onnxruntime distribution differs per image: the CPU image takes the small
``onnxruntime`` wheel, the GPU image ``onnxruntime-gpu``; both provide the same ``onnxruntime`` module.

Usage: ``python3 requirements.py pyproject.toml serve onnxruntime > requirements.txt``
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

ONNXRUNTIME = re.compile(r"^onnxruntime(-gpu)?(?=[\s<>=!~;\[]|$)")


def requirements(pyproject: Path, extra: str, ort_package: str) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"][extra]]
    return [ONNXRUNTIME.sub(ort_package, requirement) for requirement in wanted]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    pyproject, extra, ort_package = argv
    print("\n".join(requirements(Path(pyproject), extra, ort_package)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
