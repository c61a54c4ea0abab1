"""Maps the top-level folders onto one import package: ``service/`` installs as ``pixelserve.service`` and
``training/`` as ``pixelserve.training``, so the wheel's only top-level package is ``pixelserve``.

The package list is computed from the folders that exist, so the serving image, which copies no
``training/``, builds the same way. Everything else is declared in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
FOLDERS = {"pixelserve": "pixelserve", "pixelserve.service": "service", "pixelserve.training": "training"}

package_dir: dict[str, str] = {}
packages: list[str] = []
for package, folder in FOLDERS.items():
    if (HERE / folder / "__init__.py").is_file():
        package_dir[package] = folder
        packages += [package, *(f"{package}.{sub}" for sub in find_packages(str(HERE / folder)))]

setup(package_dir=package_dir, packages=packages)
