"""`pixelserve score` entry point (the work lives in service.scoring); see `pixelserve score --help`."""

from service.scoring.cli import main

__all__ = ["main"]
