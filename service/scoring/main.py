"""`pixelserve score` entry point (the work lives in pixelserve.service.scoring); see `pixelserve score --help`."""

from .cli import main

__all__ = ["main"]
