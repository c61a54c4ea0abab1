"""The playground in a real browser: Debian's Chromium driven by Playwright against
`python -m pixelserve.service` serving the committed default models.

Chromium comes from the system (``apt-get install chromium``); ``playwright install`` is never run. Under
``CI=true`` a missing browser or default model fails the tests; elsewhere it skips them.
"""

from __future__ import annotations

import base64
import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

from tests.prerequisites import require
from tests.service.rest_support import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPOSITORY = ROOT / "models"
DATASETS = Path(os.environ.get("PIXELSERVE_DATA_DIR", ROOT.parent / "shared" / "datasets"))
CIFAR_ARCHIVE = DATASETS / "cifar10-jpeg.tar.gz"
MNIST_ARCHIVE = DATASETS / "mnist.npz"
SHOTS = ROOT / "test-artifacts" / "playground"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
SERVER_START_S = 180.0  # five real models loading and warming up on a shared CPU

MNIST_CLASSIFIER = "mnist-classifier"
CIFAR_CLASSIFIER = "cifar10-classifier"
MNIST_DENOISER = "mnist-denoiser"
MNIST_AUTOENCODER = "mnist-autoencoder"
CIFAR_DENOISER = "cifar10-denoiser"
DEFAULT_MODELS = (MNIST_CLASSIFIER, CIFAR_CLASSIFIER, MNIST_DENOISER, MNIST_AUTOENCODER, CIFAR_DENOISER)
API_KEY = "playground-key"
SMALL_BODY_LIMIT = 64 * 1024


def require_models(*names: str) -> None:
    """Each test names the default models it drives, so the others can run while one is still training."""
    missing = [name for name in names if not any((DEFAULT_REPOSITORY / name).glob("*/model.onnx"))]
    require(not missing, f"default models missing from {DEFAULT_REPOSITORY}: {', '.join(missing)}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped on purpose: Playwright's sync API keeps an event loop running while it is open, which
    would break every pytest-asyncio test collected after this package."""
    require(CHROMIUM.exists(), f"{CHROMIUM} not found: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def start_server(
    log_path: Path, *args: str, env: dict[str, str] | None = None, repository: Path = DEFAULT_REPOSITORY
) -> ServerProcess:
    require(repository.is_dir(), f"no model repository at {repository}")
    server = ServerProcess(repository, log_path, *args, env=env)
    try:
        server.wait_ready(SERVER_START_S)
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server on the default models, no API key."""
    started = start_server(tmp_path_factory.mktemp("playground") / "server.log")
    yield started
    started.close()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server with an API key and a small body limit."""
    log = tmp_path_factory.mktemp("playground-keyed") / "server.log"
    started = start_server(
        log, "--max-request-bytes", str(SMALL_BODY_LIMIT), env={"PIXELSERVE_API_KEY": API_KEY}
    )  # fmt: skip
    yield started
    started.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab; uncaught script errors fail the test (refused requests are the API's business)."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    tab.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    tab.on("console", on_console)
    yield tab
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def screenshot(tab: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


def canvas_pixels(tab: Page, canvas_id: str) -> np.ndarray:
    """A canvas's pixels as uint8 HxWx3 (the page keeps alpha at 255)."""
    width, height, data = tab.evaluate(
        """id => {
            const c = document.getElementById(id);
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            return [c.width, c.height, Array.from(d)];
        }""",
        canvas_id,
    )
    return np.asarray(data, dtype=np.uint8).reshape(height, width, 4)[..., :3]


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data: bytes | str) -> np.ndarray:
    """Image file bytes (or base64 of them) -> its pixels as stored (HxW for grayscale, HxWxC otherwise)."""
    raw = base64.b64decode(data) if isinstance(data, str) else data
    with Image.open(io.BytesIO(raw)) as image:
        return np.asarray(image)


def shown_png(tab: Page, img_id: str) -> str:
    """The base64 PNG an <img> shows as a data: URL (the page shows the server's images as they came)."""
    src = tab.locator(f"#{img_id}").get_attribute("src") or ""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), f"#{img_id} shows {src[:40]!r}, not a PNG data URL"
    return src[len(prefix) :]


@dataclass
class TaskCall:
    """One POST the page made to a task route, with the answer it got."""

    url: str
    query: dict[str, str]
    body: bytes
    response: Response

    def json(self) -> dict:
        return self.response.json()


class TaskCalls:
    """Every `:task` POST of a tab, in order, seen from the browser (page.on("response"))."""

    def __init__(self, tab: Page, task: str) -> None:
        self.responses: list[Response] = []
        tab.on("response", lambda r: self.responses.append(r) if self._wanted(r, task) else None)

    @staticmethod
    def _wanted(response: Response, task: str) -> bool:
        return response.request.method == "POST" and urlsplit(response.url).path.endswith(f":{task}")

    def __len__(self) -> int:
        return len(self.responses)

    def __getitem__(self, index: int) -> TaskCall:
        response = self.responses[index]
        query = {key: values[-1] for key, values in parse_qs(urlsplit(response.url).query).items()}
        return TaskCall(response.url, query, response.request.post_data_buffer or b"", response)


@pytest.fixture(scope="module")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test split (images 28x28 white on black, labels)."""
    require(MNIST_ARCHIVE.exists(), f"{MNIST_ARCHIVE} not found")
    with np.load(MNIST_ARCHIVE) as data:
        return data["x_test"], data["y_test"]


def cifar_test_photos(prefix: str, count: int) -> dict[str, bytes]:
    """The first `count` files of the CIFAR-10 JPEG archive whose names start with `prefix` (e.g. test/ship/)."""
    require(CIFAR_ARCHIVE.exists(), f"{CIFAR_ARCHIVE} not found")
    found: dict[str, bytes] = {}
    with tarfile.open(CIFAR_ARCHIVE, "r:gz") as archive:
        for member in archive:
            if member.isfile() and member.name.startswith(prefix):
                found[member.name] = archive.extractfile(member).read()  # type: ignore[union-attr]
                if len(found) == count:
                    break
    return found


@pytest.fixture(scope="module")
def anomalous_photo(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CIFAR-10 test photo the served MNIST autoencoder flags as anomalous: the first (by name) of the first
    40 found. Under its digit normalisation most photos are reduced to a digit-like blob and pass as normal, so
    the page's "Anomalous" verdict needs one the server does flag."""
    require_models(MNIST_AUTOENCODER)
    found = cifar_test_photos("test/", 40)
    for name in sorted(found):
        response = httpx.post(
            f"{server.url}/v1/models/{MNIST_AUTOENCODER}:reconstruct", content=found[name], timeout=30
        )  # fmt: skip
        response.raise_for_status()
        if response.json()["results"][0]["is_anomaly"]:
            path = tmp_path_factory.mktemp("cifar-anomalous") / Path(name).name
            path.write_bytes(found[name])
            return path
    raise AssertionError(f"{MNIST_AUTOENCODER} flags none of {sorted(found)} as anomalous")


@pytest.fixture(scope="module")
def ship_jpeg(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CIFAR-10 test ship, taken from the dataset archive at test time: the first (by name) of the first
    24 found that the served classifier labels "ship", so the page's top-1 has a known right answer."""
    require_models(CIFAR_CLASSIFIER)
    found = cifar_test_photos("test/ship/", 24)
    for name in sorted(found):
        response = httpx.post(
            f"{server.url}/v1/models/{CIFAR_CLASSIFIER}:classify", content=found[name], timeout=30
        )  # fmt: skip
        response.raise_for_status()
        if response.json()["results"][0]["top"][0]["label"] == "ship":
            path = tmp_path_factory.mktemp("cifar") / Path(name).name
            path.write_bytes(found[name])
            return path
    raise AssertionError(f"{CIFAR_CLASSIFIER} labels none of {sorted(found)} as ship")
