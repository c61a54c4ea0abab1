"""Training plots over real HTTP (`GET /v1/models/{name}[/versions/{v}]/artifacts/{file}`) and the playground's
static page: only files listed in model.json are served, nothing outside the version directory is reachable,
the plots sit behind the API key while the page does not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from pixelserve.modelspec import SPEC_FILE, ModelSpec
from pixelserve.service.rest.playground import STATIC_DIR
from tests.service.models import CLASSIFIER, DENOISER, encode_image, random_images, write_classifier
from tests.service.rest_support import rest_server

PLOT = "learning_curves.png"
UNLISTED = "confusion_matrix.png"
HIDDEN = ".hidden.png"
LISTED = [PLOT, "../secret.png", HIDDEN, SPEC_FILE]
KEY = "pl0t-key"


def _list_artifacts(version_dir: Path, names: list[str]) -> None:
    spec = ModelSpec.load(version_dir / SPEC_FILE)
    spec.model_copy(update={"artifacts": names}).dump(version_dir / SPEC_FILE)


@pytest.fixture
def model_repository(model_repository: Path) -> Path:
    """The standard repository plus plots: v1 lists one plot and names a hand-edited model.json might hold
    (a path one level up, a hidden file, the spec itself); an unlisted PNG and a secret one level up sit beside
    it; v2 lists a different plot."""
    v1 = model_repository / CLASSIFIER / "1"
    (v1 / PLOT).write_bytes(encode_image(random_images(1, seed=5)[0]))
    (v1 / UNLISTED).write_bytes(encode_image(random_images(1, seed=6)[0]))
    (v1 / HIDDEN).write_bytes(encode_image(random_images(1, seed=9)[0]))
    (model_repository / CLASSIFIER / "secret.png").write_bytes(b"outside the version directory")
    _list_artifacts(v1, LISTED)
    v2 = write_classifier(model_repository, CLASSIFIER, 2, seed=7)
    (v2 / "reconstructions.png").write_bytes(encode_image(random_images(1, seed=8)[0]))
    _list_artifacts(v2, ["reconstructions.png"])
    return model_repository


@pytest.fixture
async def client(core, settings, metrics) -> AsyncIterator[httpx.AsyncClient]:
    async with rest_server(core, settings, metrics) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


@pytest.fixture
async def keyed(core, settings, metrics) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        rest_server(core, settings, metrics, api_key=SecretStr(KEY)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


async def test_listed_plot_is_served_as_png_with_the_files_bytes(client, model_repository) -> None:
    response = await client.get(f"/v1/models/{CLASSIFIER}/versions/1/artifacts/{PLOT}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (model_repository / CLASSIFIER / "1" / PLOT).read_bytes()


async def test_unversioned_route_serves_the_plots_of_the_version_the_policy_serves(client, model_repository) -> None:
    served = await client.get(f"/v1/models/{CLASSIFIER}/artifacts/reconstructions.png")
    assert served.status_code == 200
    assert served.content == (model_repository / CLASSIFIER / "2" / "reconstructions.png").read_bytes()
    older = await client.get(f"/v1/models/{CLASSIFIER}/artifacts/{PLOT}")
    assert older.status_code == 404, "v1's plot is not v2's"


@pytest.mark.parametrize(
    "file",
    [
        UNLISTED,  # exists beside the model but model.json does not list it
        "model.onnx",
        SPEC_FILE,  # listed, exists, but not an image
        HIDDEN,  # listed, exists, but hidden
        "..%2Fsecret.png",  # listed, but not a plain file name
        "%2E%2E%2Fsecret.png",
        "..%5Csecret.png",
        "missing.png",
    ],
)
async def test_unlisted_or_escaping_files_are_404_and_never_served(client, file) -> None:
    response = await client.get(f"/v1/models/{CLASSIFIER}/versions/1/artifacts/{file}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert b"outside the version directory" not in response.content


async def test_artifacts_of_an_unknown_model_or_version_are_404(client) -> None:
    for path in (f"/v1/models/nope/artifacts/{PLOT}", f"/v1/models/{CLASSIFIER}/versions/9/artifacts/{PLOT}"):
        response = await client.get(path)
        assert response.status_code == 404, path
    assert (await client.get(f"/v1/models/{DENOISER}/artifacts/{PLOT}")).status_code == 404


async def test_metadata_lists_the_artifacts_and_quality_the_page_shows(client) -> None:
    body = (await client.get(f"/v1/models/{CLASSIFIER}/versions/1")).json()
    assert body["spec"]["artifacts"] == LISTED
    assert "quality" in body


async def test_root_redirects_to_the_playground_page(client) -> None:
    response = await client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"
    page = await client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == (STATIC_DIR / "index.html").read_text()
    assert "default-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize(("file", "media"), [("app.js", "javascript"), ("style.css", "text/css")])
async def test_playground_assets_are_served_with_their_types(client, file, media) -> None:
    response = await client.get(f"/ui/{file}")
    assert response.status_code == 200
    assert media in response.headers["content-type"]
    assert response.content == (STATIC_DIR / file).read_bytes()


async def test_page_loads_without_the_key_while_plots_need_it(keyed) -> None:
    assert (await keyed.get("/ui/")).status_code == 200
    assert (await keyed.get("/ui/app.js")).status_code == 200
    path = f"/v1/models/{CLASSIFIER}/versions/1/artifacts/{PLOT}"
    assert (await keyed.get(path)).status_code == 401
    assert (await keyed.get(path, headers={"X-API-Key": KEY})).status_code == 200


async def test_a_listed_symlink_is_refused_whatever_it_points_at(core, settings, metrics, tmp_path: Path) -> None:
    """A link planted in the version directory under a listed name serves nothing: not a secret outside it,
    not /proc/self/environ (where the API key lives), not even a plot inside it."""
    v1 = settings.model_repository / CLASSIFIER / "1"
    secret = tmp_path / "environ.png"
    secret.write_bytes(b"PIXELSERVE_API_KEY=hunter2")
    links = {"outside.png": secret, "proc.png": Path("/proc/self/environ"), "inside.png": v1 / PLOT}
    for name, target in links.items():
        (v1 / name).symlink_to(target)
    _list_artifacts(v1, [PLOT, *links])
    await core.repository.refresh()
    async with rest_server(core, settings, metrics) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.get(f"/v1/models/{CLASSIFIER}/versions/1/artifacts/{PLOT}")).status_code == 200
        for name in links:
            response = await http.get(f"/v1/models/{CLASSIFIER}/versions/1/artifacts/{name}")
            assert response.status_code == 404, name
            assert b"hunter2" not in response.content and b"PATH=" not in response.content
