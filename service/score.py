"""`pixelserve score` entry point (the work lives in pixelserve.service.scoring); see `pixelserve score --help`."""

from pixelserve.service.scoring.cli import main

__all__ = ["main"]
