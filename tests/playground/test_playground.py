"""The playground page in Chromium against the real server and the default models: what a person sees after
drawing, uploading, denoising and reconstructing, checked against the REST API on the very pixels the page sent.
Every step leaves a screenshot in test-artifacts/playground/."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.playground.conftest import (
    API_KEY,
    CIFAR_CLASSIFIER,
    CIFAR_DENOISER,
    DEFAULT_MODELS,
    MNIST_AUTOENCODER,
    MNIST_CLASSIFIER,
    MNIST_DENOISER,
    SMALL_BODY_LIMIT,
    canvas_pixels,
    png_bytes,
    require_models,
    screenshot,
)
from tests.service.rest_support import ServerProcess

# Pen strokes in pad coordinates (0..1): a "1" is one vertical line, a "7" a top bar and a diagonal.
DIGIT_STROKES = {
    "1": [[(0.52, 0.15), (0.50, 0.85)]],
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
}
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
RESULT_TIMEOUT_MS = 30_000


def open_model(tab: Page, server: ServerProcess, name: str) -> None:
    tab.goto(f"{server.url}/ui/#{name}")
    expect(tab.locator(f".model-item.active[data-model='{name}']")).to_be_visible()
    expect(tab.locator("#model-name")).to_have_text(name)


def draw(tab: Page, strokes: list[list[tuple[float, float]]]) -> None:
    """Real mouse drags over the pad (the page listens to pointer events, as for touch and pens)."""
    box = tab.locator("#pad").bounding_box()
    assert box is not None
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        tab.mouse.move(*points[0])
        tab.mouse.down()
        for point in points[1:]:
            tab.mouse.move(*point, steps=12)
        tab.mouse.up()


def wait_done(tab: Page, task: str) -> None:
    expect(tab.locator(f"#{task}-status")).to_have_text(re.compile(r" ms$"), timeout=RESULT_TIMEOUT_MS)


def api_classify(server: ServerProcess, name: str, body: bytes) -> dict:
    response = httpx.post(f"{server.url}/v1/models/{name}:classify", content=body, timeout=30)
    response.raise_for_status()
    return response.json()["results"][0]


def shown_bars(tab: Page) -> list[tuple[str, float]]:
    bars = tab.locator("#bars li")
    return [
        (bars.nth(i).get_attribute("data-label") or "", float(bars.nth(i).get_attribute("data-probability") or "nan"))
        for i in range(bars.count())
    ]


def assert_same_as_api(tab: Page, expected: dict) -> None:
    shown = shown_bars(tab)
    assert [label for label, _ in shown] == [s["label"] for s in expected["top"]]
    np.testing.assert_allclose([p for _, p in shown], [s["probability"] for s in expected["top"]], rtol=1e-6)


def assert_ood_flag(tab: Page, expected: dict) -> None:
    """The OOD verdict is shown exactly when the API gives one (the classifier's paired autoencoder is served)."""
    ood = tab.locator("#ood")
    if expected["ood_score"] is None:
        expect(ood).to_be_hidden()
        return
    expect(ood).to_contain_text(f"threshold {expected['ood_threshold']:.4g}")
    expect(ood).to_have_attribute("data-is-ood", str(expected["is_ood"]).lower())
    expect(ood).to_contain_text("Out of distribution" if expected["is_ood"] else "In distribution")


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    mse = np.mean((reference.astype(np.float64) / 255 - test.astype(np.float64) / 255) ** 2)
    return float(10 * np.log10(1 / mse))


def test_page_lists_the_default_models_with_facts_quality_and_training_plots(page: Page, server) -> None:
    require_models(*DEFAULT_MODELS)
    response = page.goto(f"{server.url}/")
    assert response is not None and response.ok
    assert page.url.startswith(f"{server.url}/ui/"), "/ redirects to the page"
    for name in DEFAULT_MODELS:
        expect(page.locator(f".model-item[data-model='{name}']")).to_be_visible()
    open_model(page, server, MNIST_CLASSIFIER)
    meta = httpx.get(f"{server.url}/v1/models/{MNIST_CLASSIFIER}", timeout=10).json()
    facts = page.locator("#model-facts")
    expect(facts).to_contain_text("28\N{MULTIPLICATION SIGN}28 grayscale")
    expect(facts).to_contain_text(meta["provider"])
    accuracy = meta["spec"]["quality"]["metrics"]["accuracy"]
    expect(page.locator("#model-quality")).to_contain_text(f"{100 * accuracy:.1f}%")
    plots = page.locator("#artifacts img")
    expect(plots).to_have_count(len(meta["spec"]["artifacts"]))
    for i in range(plots.count()):
        expect(plots.nth(i)).to_have_js_property("complete", True)
        assert plots.nth(i).evaluate("img => img.naturalWidth") > 100
    screenshot(page, "01-model-card")


@pytest.mark.parametrize("digit", sorted(DIGIT_STROKES))
def test_drawn_digit_is_classified_as_that_digit(page: Page, server, digit: str) -> None:
    require_models(MNIST_CLASSIFIER)
    open_model(page, server, MNIST_CLASSIFIER)
    draw(page, DIGIT_STROKES[digit])
    wait_done(page, "classify")
    expect(page.locator("#top1-label")).to_have_text(digit)
    sent = canvas_pixels(page, "input-preview")
    assert sent.shape == (28, 28, 3)
    ink = sent[..., 0].astype(np.float64)
    rows, cols = np.nonzero(ink > 0)
    assert 19 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 21, "MNIST preprocessing: longer side scaled to 20 px"
    centre = [np.average(np.arange(28), weights=ink.sum(axis=axis)) for axis in (1, 0)]
    np.testing.assert_allclose(centre, [13.5, 13.5], atol=1.0, err_msg="centred by mass in 28x28")
    expected = api_classify(server, MNIST_CLASSIFIER, png_bytes(sent))
    assert_same_as_api(page, expected)
    assert_ood_flag(page, expected)
    screenshot(page, f"02-draw-{digit}")


def test_finger_drawn_one_is_classified_on_a_touch_screen(browser, server) -> None:
    """Real touch events (Chromium's input pipeline, as a phone sends them) reach the pad as pointer events."""
    require_models(MNIST_CLASSIFIER)
    context = browser.new_context(viewport={"width": 412, "height": 915}, has_touch=True, is_mobile=True)
    try:
        tab = context.new_page()
        open_model(tab, server, MNIST_CLASSIFIER)
        tab.locator("#pad").scroll_into_view_if_needed()
        box = tab.locator("#pad").bounding_box()
        assert box is not None
        x = box["x"] + box["width"] / 2
        touch = context.new_cdp_session(tab)
        ys = np.linspace(box["y"] + 0.15 * box["height"], box["y"] + 0.85 * box["height"], 12)
        touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": ys[0]}]})
        for y in ys[1:]:
            touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        wait_done(tab, "classify")
        expect(tab.locator("#top1-label")).to_have_text("1")
        screenshot(tab, "02-touch-1-mobile")
    finally:
        context.close()


def test_uploaded_cifar_ship_shows_the_models_top1(page: Page, server, ship_jpeg: Path) -> None:
    open_model(page, server, CIFAR_CLASSIFIER)
    page.set_input_files("#file-input", str(ship_jpeg))
    wait_done(page, "classify")
    expect(page.locator("#top1-label")).to_have_text("ship")
    assert_same_as_api(page, api_classify(server, CIFAR_CLASSIFIER, ship_jpeg.read_bytes()))
    expect(page.locator("#input-label")).to_have_text(ship_jpeg.name)
    screenshot(page, "03-upload-cifar-ship")


def _denoise_source(page: Page, model: str, ship_jpeg: Path | None) -> None:
    if model == MNIST_DENOISER:
        page.get_by_role("button", name="Digit 3").click()
    else:
        assert ship_jpeg is not None
        page.set_input_files("#file-input", str(ship_jpeg))


@pytest.mark.parametrize("model", [MNIST_DENOISER, CIFAR_DENOISER])
def test_denoise_shows_three_images_and_beats_the_noisy_psnr(page: Page, server, model: str, request) -> None:
    require_models(model)
    ship = request.getfixturevalue("ship_jpeg") if model == CIFAR_DENOISER else None
    open_model(page, server, model)
    _denoise_source(page, model, ship)
    wait_done(page, "denoise")
    original, noisy, output = (canvas_pixels(page, c) for c in ("dn-original", "dn-noisy", "dn-output"))
    for image in (original, noisy, output):
        assert image.std() > 10, "each of the three images is rendered (not blank)"
    shown_noisy = float(page.locator("#psnr-noisy").get_attribute("data-psnr") or "nan")
    shown_denoised = float(page.locator("#psnr-denoised").get_attribute("data-psnr") or "nan")
    channels = 1 if model == MNIST_DENOISER else 3
    assert shown_noisy == pytest.approx(psnr(original[..., :channels], noisy[..., :channels]), abs=1e-3)
    assert shown_denoised == pytest.approx(psnr(original[..., :channels], output[..., :channels]), abs=1e-3)
    assert shown_denoised > shown_noisy + 1, f"denoised {shown_denoised:.2f} dB vs noisy {shown_noisy:.2f} dB"
    expect(page.locator("#psnr-denoised")).to_have_text(re.compile(r"^PSNR \d+\.\d\d dB$"))
    screenshot(page, f"04-denoise-{model}")


def test_reconstruction_shows_heatmap_and_the_servers_score_against_the_threshold(page: Page, server) -> None:
    require_models(MNIST_AUTOENCODER)
    open_model(page, server, MNIST_AUTOENCODER)
    page.get_by_role("button", name="Digit 2").click()
    wait_done(page, "reconstruct")
    sent = canvas_pixels(page, "rc-input")
    heatmap = canvas_pixels(page, "rc-heatmap")
    assert heatmap.std() > 1, "the error heatmap has structure"
    response = httpx.post(
        f"{server.url}/v1/models/{MNIST_AUTOENCODER}:reconstruct", content=png_bytes(sent), timeout=30
    )
    expected = response.json()["results"][0]
    box = page.locator("#anomaly")
    assert float(box.get_attribute("data-score") or "nan") == pytest.approx(expected["error"], rel=1e-6)
    verdict = "Anomalous" if expected["is_anomaly"] else "Normal"
    expect(box).to_contain_text(verdict)
    expect(box).to_contain_text("threshold")
    screenshot(page, "05-reconstruct-digit")


def test_reconstruction_flags_a_cifar_photo_as_anomalous_for_the_mnist_autoencoder(
    page: Page, server, ship_jpeg: Path
) -> None:
    require_models(MNIST_AUTOENCODER)
    open_model(page, server, MNIST_AUTOENCODER)
    page.set_input_files("#file-input", str(ship_jpeg))
    wait_done(page, "reconstruct")
    expect(page.locator("#anomaly")).to_contain_text("Anomalous")
    expect(page.locator("#anomaly")).to_have_class(re.compile(r"\bwarn\b"))
    screenshot(page, "06-reconstruct-anomaly")


def test_corrupt_upload_shows_the_servers_error_message(page: Page, server) -> None:
    require_models(MNIST_CLASSIFIER)
    open_model(page, server, MNIST_CLASSIFIER)
    page.set_input_files("#file-input", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": CORRUPT_PNG}])
    message = page.locator("#classify-error")
    expect(message).to_be_visible()
    expected = httpx.post(f"{server.url}/v1/models/{MNIST_CLASSIFIER}:classify", content=CORRUPT_PNG).json()
    expect(message).to_contain_text("The server rejected the input")
    reason = expected["error"]["message"].split(": cannot identify")[0]  # the rest names a per-call object
    expect(message).to_contain_text(reason)
    expect(message).to_contain_text("HTTP 400")
    expect(page.locator("#classify-result")).to_be_hidden()
    screenshot(page, "07-corrupt-upload")


def test_corrupt_upload_for_a_denoiser_is_explained_without_a_request(page: Page, server) -> None:
    require_models(MNIST_DENOISER)
    open_model(page, server, MNIST_DENOISER)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if ":denoise" in r.url else None)
    page.set_input_files("#file-input", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": CORRUPT_PNG}])
    expect(page.locator("#denoise-error")).to_contain_text('Could not read "broken.png" as an image')
    assert requests == []


def test_with_an_api_key_the_page_asks_for_it_then_works(page: Page, keyed_server) -> None:
    require_models(MNIST_CLASSIFIER)
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("x-api-key"))))
    response = page.goto(f"{keyed_server.url}/ui/#{MNIST_CLASSIFIER}")
    assert response is not None and response.status == 200, "the page itself needs no key"

    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#key-reason")).to_contain_text("requires an API key")
    screenshot(page, "08-api-key-dialog")
    page.fill("#key-input", "not-the-key")
    page.click("#key-submit")
    expect(page.locator("#key-reason")).to_contain_text("wrong API key")
    page.fill("#key-input", API_KEY)
    page.click("#key-submit")
    expect(dialog).to_be_hidden()

    expect(page.locator("#model-name")).to_have_text(MNIST_CLASSIFIER)
    expect(page.locator("#key-button")).to_have_text("API key: set")
    draw(page, DIGIT_STROKES["1"])
    wait_done(page, "classify")
    expect(page.locator("#top1-label")).to_have_text("1")
    screenshot(page, "09-api-key-classified")

    api_calls = [(url, key) for url, key in sent if "/v1/" in url]
    assert api_calls and api_calls[-1][1] == API_KEY
    assert all(API_KEY not in url for url, _ in sent), "the key never travels in a URL"
    assert page.evaluate("sessionStorage.getItem('pixelserve.apiKey')") == API_KEY


def test_too_large_upload_shows_the_limit(page: Page, keyed_server, tmp_path: Path) -> None:
    require_models(MNIST_CLASSIFIER)
    page.goto(f"{keyed_server.url}/ui/#{MNIST_CLASSIFIER}")
    page.fill("#key-input", API_KEY)
    page.click("#key-submit")
    expect(page.locator("#model-name")).to_have_text(MNIST_CLASSIFIER)
    noise = np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(noise))
    assert big.stat().st_size > SMALL_BODY_LIMIT
    page.set_input_files("#file-input", str(big))
    message = page.locator("#classify-error")
    expect(message).to_contain_text("too large")
    expect(message).to_contain_text("HTTP 413")
    screenshot(page, "10-too-large")
