"""The model repository: `disk` (what is there), `serving` (what serves), `loading` (sessions checked against
model.json) and `repository` (the version policy and hot reload that connect them)."""

from pixelserve.service.repository.repository import ModelRepository
from pixelserve.service.repository.serving import ServedVersion

__all__ = ["ModelRepository", "ServedVersion"]
