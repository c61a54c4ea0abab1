"""The model repository: `disk` (what is there), `serving` (what serves), `loading` (sessions checked against
model.json) and `repository` (the version policy and hot reload that connect them)."""

from .repository import ModelRepository
from .serving import ServedVersion

__all__ = ["ModelRepository", "ServedVersion"]
