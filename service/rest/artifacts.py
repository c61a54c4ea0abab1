"""``GET /v1/models/{name}[/versions/{version}]/artifacts/{file}``: the training plots stored beside a model.

Only files that the version's model.json lists in ``artifacts`` are served, and only plain image file names:
a listed name with a separator, a leading dot or another suffix is refused too, and so is a symlink or any
file whose real path is outside the version directory, so neither a request nor a hand-edited model.json (nor
a link planted beside it) can reach a file outside it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse

from ..core.types import Core
from ..protocol.tasks import model_ref
from ..settings import Settings
from .routing import add_model_routes

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _servable(file: str) -> bool:
    return Path(file).name == file and not file.startswith(".") and Path(file).suffix.lower() in MEDIA_TYPES


def _inside(path: Path, directory: Path) -> bool:
    """A regular file that really is in the version directory: no symlink (which could point at
    /proc/self/environ, the API key with it), nothing whose resolved path leaves the directory."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        return path.resolve(strict=True).is_relative_to(directory.resolve(strict=True))
    except OSError:
        return False


def create_artifact_router(core: Core, settings: Settings) -> APIRouter:
    router = APIRouter(tags=["models"])

    async def model_artifact(name: str, file: str, version: str | None = None) -> FileResponse:
        """A plot listed in the version's model.json ``artifacts`` (learning curves, confusion matrix, ...)."""
        info = core.model_info(model_ref(name, version))
        spec, directory = info.spec, info.directory
        path = (directory or Path("/nonexistent")) / file
        if directory is None or file not in spec.artifacts or not _servable(file) or not _inside(path, directory):
            raise HTTPException(404, f"model {spec.name} version {spec.version} has no artifact {file!r}")
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[path.suffix.lower()],
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=60"},
        )

    add_model_routes(
        router,
        "/v1/models/{name}",
        "/artifacts/{file}",
        model_artifact,
        "GET",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}, "description": "the plot"}},
    )
    return router
