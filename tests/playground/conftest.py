"""The playground in a real browser: Debian's Chromium driven by Playwright against
`python -m pixelserve.service` serving the committed default models.

Chromium comes from the system (``apt-get install chromium``); ``playwright install`` is never run. Under
``CI=true`` a missing browser or default model fails the tests; elsewhere it skips them.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.prerequisites import require
from tests.service.rest_support import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPOSITORY = ROOT / "models"
DATASETS = Path(os.environ.get("PIXELSERVE_DATA_DIR", ROOT.parent / "shared" / "datasets"))
CIFAR_ARCHIVE = DATASETS / "cifar10-jpeg.tar.gz"
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


def start_server(log_path: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    require(DEFAULT_REPOSITORY.is_dir(), f"no model repository at {DEFAULT_REPOSITORY}")
    server = ServerProcess(DEFAULT_REPOSITORY, log_path, *args, env=env)
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


@pytest.fixture(scope="module")
def ship_jpeg(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CIFAR-10 test ship, taken from the dataset archive at test time: the first (by name) of the first
    24 found that the served classifier labels "ship", so the page's top-1 has a known right answer."""
    require_models(CIFAR_CLASSIFIER)
    require(CIFAR_ARCHIVE.exists(), f"{CIFAR_ARCHIVE} not found")
    found: dict[str, bytes] = {}
    with tarfile.open(CIFAR_ARCHIVE, "r:gz") as archive:
        for member in archive:
            if member.isfile() and member.name.startswith("test/ship/"):
                found[member.name] = archive.extractfile(member).read()  # type: ignore[union-attr]
                if len(found) == 24:
                    break
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
