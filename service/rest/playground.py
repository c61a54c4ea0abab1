"""The browser playground: static HTML, CSS and JS served at ``/ui/`` (``/`` redirects there).

No build step and nothing fetched from elsewhere: the files ship inside the package. The page itself needs no
API key (it holds no data); it asks for the key when the API answers 401 and sends it as ``X-API-Key``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).with_name("playground_static")
MOUNT_PATH = "/ui"

# Everything the page loads is its own; images it builds are blob: or data: URLs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _PlaygroundFiles(StaticFiles):
    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def install_playground(app: FastAPI) -> None:
    """Mount the page outside the API-key guard: it is public, the API calls it makes are not."""

    @app.get("/", include_in_schema=False)
    async def playground_redirect() -> RedirectResponse:
        return RedirectResponse(f"{MOUNT_PATH}/")

    app.mount(MOUNT_PATH, _PlaygroundFiles(directory=STATIC_DIR, html=True), name="playground")
