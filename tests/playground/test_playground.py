"""The playground page in Chromium against the real server and the default models: what a person sees after
drawing, uploading, denoising and reconstructing. The page sends every input as it is (the pad as a PNG at its
own size, a file as its own bytes) and shows what the model saw from the server's answer (`prepared.inputs`); the
tests check what it sent, what it shows and the REST API on the very bytes the page sent.
Every step leaves a screenshot in test-artifacts/playground/."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image
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
    TaskCalls,
    canvas_pixels,
    decode,
    png_bytes,
    require_models,
    screenshot,
    shown_png,
    start_server,
)
from tests.service.rest_support import ServerProcess

# Pen strokes in pad coordinates (0..1): a "1" is one vertical line, a "7" a top bar and a diagonal.
DIGIT_STROKES = {
    "1": [[(0.52, 0.15), (0.50, 0.85)]],
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
}
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
RESULT_TIMEOUT_MS = 30_000
PAD_SIDE = 280  # the drawing pad's canvas (and the digit samples'), sent at that size
SCAN_SIZE = (240, 200)  # width, height of the paper a scanned digit lies on
SCAN_INDEX = 1  # an MNIST test digit (a 2)


def js_number(value: float, digits: int) -> str:
    """The page's number(): `digits` significant digits, trailing zeros dropped (plain notation here)."""
    return f"{value:.{digits}g}"


def open_model(tab: Page, server: ServerProcess, name: str) -> None:
    tab.goto(f"{server.url}/ui/#{name}")
    expect(tab.locator(f".model-item.active[data-model='{name}']")).to_be_visible()
    expect(tab.locator("#model-name")).to_have_text(name)


def draw(tab: Page, strokes: list[list[tuple[float, float]]]) -> None:
    """Real mouse drags over the pad (the page listens to pointer events, as for touch and pens)."""
    pad = tab.locator("#pad")
    pad.scroll_into_view_if_needed()  # below a long model card, as a user would scroll to it
    box = pad.bounding_box()
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


def api_task(server: ServerProcess, name: str, task: str, body: bytes, **params: str) -> dict:
    """The same call from outside the browser: JSON, with the prepared input echoed."""
    response = httpx.post(
        f"{server.url}/v1/models/{name}:{task}",
        params={"return_input": "true", **params},
        content=body,
        headers={"Accept": "application/json"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


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


def assert_centred_digit(seen: np.ndarray) -> None:
    """MNIST's geometry: one 28x28 channel, the ink within a 20x20 box, the centre of mass (in pixel indices) at
    (14, 14) to within half a pixel, as MNIST's own digits."""
    assert seen.shape == (28, 28)
    ink = seen.astype(np.float64)
    rows, cols = np.nonzero(seen > 0)
    assert 18 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 20, "the longer side of the ink scaled to 20 px"
    centre = [np.average(np.arange(28), weights=ink.sum(axis=axis)) for axis in (1, 0)]
    np.testing.assert_allclose(centre, [14, 14], atol=0.51, err_msg="centred by mass in 28x28")


def assert_shown_crisp(tab: Page, img_id: str, side: int) -> None:
    """The model's small input is upscaled on screen without smoothing."""
    natural, width, rendering = tab.locator(f"#{img_id}").evaluate(
        "img => [img.naturalWidth, img.getBoundingClientRect().width, getComputedStyle(img).imageRendering]"
    )
    assert natural == side
    assert width >= 3 * side, f"#{img_id} is {width} px wide for {side} px"
    assert rendering == "pixelated"


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    mse = np.mean((reference.astype(np.float64) / 255 - test.astype(np.float64) / 255) ** 2)
    return float(10 * np.log10(1 / mse))


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


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
    pre = meta["spec"]["preprocessing"]
    assert pre["normalize"] == "digit"
    expect(facts).to_contain_text("digit normalisation")
    accuracy = meta["spec"]["quality"]["metrics"]["accuracy"]
    expect(page.locator("#model-quality")).to_contain_text(f"{100 * accuracy:.1f}%")
    plots = page.locator("#artifacts img")
    expect(plots).to_have_count(len(meta["spec"]["artifacts"]))
    for i in range(plots.count()):
        expect(plots.nth(i)).to_have_js_property("complete", True)
        assert plots.nth(i).evaluate("img => img.naturalWidth") > 100
    screenshot(page, "01-model-card")


@pytest.mark.parametrize("digit", sorted(DIGIT_STROKES))
def test_drawn_digit_is_sent_as_drawn_and_the_page_shows_the_servers_centred_28x28(
    page: Page, server, digit: str
) -> None:
    require_models(MNIST_CLASSIFIER)
    open_model(page, server, MNIST_CLASSIFIER)
    calls = TaskCalls(page, "classify")
    draw(page, DIGIT_STROKES[digit])
    wait_done(page, "classify")
    expect(page.locator("#top1-label")).to_have_text(digit)

    call = calls[-1]
    assert call.query == {"top_k": "5", "return_input": "true"}, "the model's own preprocessing, echoed"
    sent = decode(call.body)
    assert sent.shape[:2] == (PAD_SIDE, PAD_SIDE), "the pad is sent at its own size, not prepared in the browser"
    assert sent[..., 0].max() == 255 and np.median(sent[..., 0]) == 0, "white strokes on black, as drawn"

    shown = shown_png(page, "classify-seen")
    assert shown == call.json()["prepared"]["inputs"][0], "the page shows the server's own PNG"
    assert_centred_digit(decode(shown))
    assert_shown_crisp(page, "classify-seen", 28)
    prepared = page.locator("#classify-prepared")
    expect(prepared).to_have_attribute("data-normalize", "digit")
    expect(prepared).to_contain_text("digit normalisation")

    expected = api_task(server, MNIST_CLASSIFIER, "classify", call.body, top_k="5")
    assert expected["prepared"]["inputs"][0] == shown, "the same bytes through the API: the same model input"
    assert_same_as_api(page, expected["results"][0])
    assert_ood_flag(page, expected["results"][0])
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
        assert_centred_digit(decode(shown_png(tab, "classify-seen")))
        screenshot(tab, "02-touch-1-mobile")
    finally:
        context.close()


def test_dark_on_white_scan_is_sent_as_is_classified_and_the_model_saw_white_on_black(
    page: Page, server, mnist_test
) -> None:
    """A real MNIST test digit printed dark on white paper, off centre: the server inverts, crops and centres it."""
    require_models(MNIST_CLASSIFIER)
    images, labels = mnist_test
    digit = Image.fromarray(255 - images[SCAN_INDEX]).resize((84, 84), Image.Resampling.BILINEAR)
    paper = Image.new("L", SCAN_SIZE, 255)
    paper.paste(digit, (130, 70))
    scan = encoded(paper.convert("RGB"))
    open_model(page, server, MNIST_CLASSIFIER)
    expect(page.locator("#resize-select")).to_be_disabled()  # digit normalisation ignores the resize mode
    calls = TaskCalls(page, "classify")
    page.set_input_files("#file-input", files=[{"name": "scan.png", "mimeType": "image/png", "buffer": scan}])
    wait_done(page, "classify")
    expect(page.locator("#top1-label")).to_have_text(str(labels[SCAN_INDEX]))
    expect(page.locator("#input-size")).to_contain_text("240\N{MULTIPLICATION SIGN}200 PNG")

    call = calls[-1]
    assert call.body == scan, "the upload's own bytes, not resized or converted in the browser"
    shown = shown_png(page, "classify-seen")
    assert shown == call.json()["prepared"]["inputs"][0]
    seen = decode(shown)
    assert np.median(decode(scan)) == 255, "the upload is dark on white"
    ring = np.concatenate([seen[0], seen[-1], seen[:, 0], seen[:, -1]])
    assert np.median(seen) == 0 and ring.max() < 30, "the light paper became a black background"
    assert seen.max() > 200, "the dark ink became white strokes"
    assert_centred_digit(seen)
    assert_same_as_api(page, api_task(server, MNIST_CLASSIFIER, "classify", scan, top_k="5")["results"][0])
    screenshot(page, "03-upload-dark-on-white-scan")


def test_uploaded_cifar_ship_is_sent_as_is_and_shows_the_models_top1(page: Page, server, ship_jpeg: Path) -> None:
    open_model(page, server, CIFAR_CLASSIFIER)
    calls = TaskCalls(page, "classify")
    page.set_input_files("#file-input", str(ship_jpeg))
    wait_done(page, "classify")
    expect(page.locator("#top1-label")).to_have_text("ship")
    call = calls[-1]
    assert call.body == ship_jpeg.read_bytes()
    answer = call.json()
    assert_same_as_api(page, answer["results"][0])
    assert_same_as_api(page, api_task(server, CIFAR_CLASSIFIER, "classify", call.body, top_k="5")["results"][0])
    expect(page.locator("#input-label")).to_have_text(ship_jpeg.name)
    shown = shown_png(page, "classify-seen")
    assert shown == answer["prepared"]["inputs"][0]
    assert decode(shown).shape == (32, 32, 3)
    expect(page.locator("#classify-prepared")).to_have_attribute("data-resize", "center-crop")
    screenshot(page, "03-upload-cifar-ship")


def test_resize_override_is_sent_for_a_non_square_upload_and_the_mode_used_is_shown(
    page: Page, server, ship_jpeg: Path
) -> None:
    """A 2:1 photo: the model's default (center-crop), then letterbox and stretch chosen on the page."""
    with Image.open(ship_jpeg) as ship:
        wide = encoded(ship.convert("RGB").resize((128, 64), Image.Resampling.BICUBIC))
    open_model(page, server, CIFAR_CLASSIFIER)
    expect(page.locator("#resize-select")).to_be_enabled()
    prepared = page.locator("#classify-prepared")
    shown_by_mode: dict[str, str] = {}
    for choice, mode in (("", "center-crop"), ("letterbox", "letterbox"), ("stretch", "stretch")):
        with page.expect_response(lambda r: r.request.method == "POST" and ":classify" in r.url) as answered:
            if choice:
                page.select_option("#resize-select", choice)
            else:
                page.set_input_files(
                    "#file-input", files=[{"name": "wide.png", "mimeType": "image/png", "buffer": wide}]
                )
        response = answered.value
        assert response.request.post_data_buffer == wide
        query = parse_qs(urlsplit(response.url).query)
        assert query.get("resize") == ([choice] if choice else None), "the override only when one is chosen"
        expect(prepared).to_have_attribute("data-resize", mode)
        wait_done(page, "classify")
        expect(prepared).to_contain_text(f"no normalisation, {mode}")
        if choice:
            expect(prepared).to_contain_text("chosen here; the model's default is center-crop")
        shown = shown_png(page, "classify-seen")
        assert shown == response.json()["prepared"]["inputs"][0]
        assert shown == api_task(server, CIFAR_CLASSIFIER, "classify", wide, resize=mode)["prepared"]["inputs"][0]
        assert decode(shown).shape == (32, 32, 3)
        assert_shown_crisp(page, "classify-seen", 32)
        shown_by_mode[mode] = shown
        screenshot(page, f"03-resize-{mode}")
    assert len(set(shown_by_mode.values())) == 3, "each mode gives the model a different image"


def _denoise_source(page: Page, model: str, ship_jpeg: Path | None) -> None:
    if model == MNIST_DENOISER:
        page.get_by_role("button", name="Digit 3").click()
    else:
        assert ship_jpeg is not None
        page.set_input_files("#file-input", str(ship_jpeg))


@pytest.mark.parametrize("model", [MNIST_DENOISER, CIFAR_DENOISER])
def test_denoise_noises_the_servers_prepared_input_and_beats_the_noisy_psnr(
    page: Page, server, model: str, request
) -> None:
    require_models(model)
    ship = request.getfixturevalue("ship_jpeg") if model == CIFAR_DENOISER else None
    open_model(page, server, model)
    calls = TaskCalls(page, "denoise")
    _denoise_source(page, model, ship)
    wait_done(page, "denoise")
    assert len(calls) == 2, "one call prepares the input as sent, one denoises its noisy copy"
    first, second = calls[0], calls[1]
    if ship is None:
        assert decode(first.body).shape[:2] == (PAD_SIDE, PAD_SIDE), "the sample is sent as drawn"
    else:
        assert first.body == ship.read_bytes()
    assert first.query == {"return_input": "true"}
    assert second.query == {"normalize": "none", "return_input": "true"}, "the noisy image is already prepared"

    clean_b64, noisy_b64, output_b64 = (shown_png(page, i) for i in ("dn-original", "dn-noisy", "dn-output"))
    assert clean_b64 == first.json()["prepared"]["inputs"][0]
    assert clean_b64 == api_task(server, model, "denoise", first.body)["prepared"]["inputs"][0]
    assert noisy_b64 == second.json()["prepared"]["inputs"][0]
    assert output_b64 == second.json()["results"][0]["image"]
    clean, noisy, output = decode(clean_b64), decode(noisy_b64), decode(output_b64)
    sent_noisy = decode(second.body)[..., : 1 if model == MNIST_DENOISER else 3]
    assert np.array_equal(sent_noisy.reshape(noisy.shape), noisy), "the model saw the noisy image the page sent"
    for image in (clean, noisy, output):
        assert image.std() > 10, "each of the three images is rendered (not blank)"
    shown_noisy = float(page.locator("#psnr-noisy").get_attribute("data-psnr") or "nan")
    shown_denoised = float(page.locator("#psnr-denoised").get_attribute("data-psnr") or "nan")
    assert shown_noisy == pytest.approx(psnr(clean, noisy), abs=1e-3)
    assert shown_denoised == pytest.approx(psnr(clean, output), abs=1e-3)
    assert shown_denoised > shown_noisy + 1, f"denoised {shown_denoised:.2f} dB vs noisy {shown_noisy:.2f} dB"
    expect(page.locator("#psnr-denoised")).to_have_text(re.compile(r"^PSNR \d+\.\d\d dB$"))
    expect(page.locator("#denoise-prepared")).to_contain_text("no normalisation, stretch")
    screenshot(page, f"04-denoise-{model}")


def test_reconstruction_shows_what_the_model_saw_the_heatmap_and_the_servers_score(page: Page, server) -> None:
    require_models(MNIST_AUTOENCODER)
    open_model(page, server, MNIST_AUTOENCODER)
    calls = TaskCalls(page, "reconstruct")
    page.get_by_role("button", name="Digit 2").click()
    wait_done(page, "reconstruct")
    call = calls[-1]
    assert decode(call.body).shape[:2] == (PAD_SIDE, PAD_SIDE), "the sample digit is sent as drawn"
    answer = call.json()
    seen_b64 = shown_png(page, "rc-input")
    assert seen_b64 == answer["prepared"]["inputs"][0]
    assert shown_png(page, "rc-output") == answer["results"][0]["image"]
    assert_centred_digit(decode(seen_b64))
    expect(page.locator("#reconstruct-prepared")).to_contain_text("digit normalisation")

    served_map = np.asarray(answer["results"][0]["anomaly_map"], dtype=np.float64)
    assert served_map.shape == (28, 28), "the committed autoencoder outputs its per-pixel anomaly map"
    seen, output = (decode(b).astype(np.float64) / 255 for b in (seen_b64, answer["results"][0]["image"]))
    np.testing.assert_allclose(served_map, (seen - output) ** 2, atol=4 / 255, err_msg="squared error per pixel")
    expect(page.locator("#heatmap-legend")).to_have_attribute("data-source", "server")
    expect(page.locator("#heatmap-title")).to_have_text("Anomaly map")
    heatmap = canvas_pixels(page, "rc-heatmap")
    assert heatmap.shape == (28, 28, 3) and heatmap.std() > 1, "the anomaly map has structure"
    brightest = np.unravel_index(heatmap.astype(np.int64).sum(axis=2).argmax(), (28, 28))
    assert served_map[brightest] == pytest.approx(served_map.max()), "drawn from the server's map"
    largest = float(page.locator("#heatmap-scale").inner_text())
    assert largest == pytest.approx(served_map.max(), rel=5e-3), "the legend is the server's largest value"

    expected = api_task(server, MNIST_AUTOENCODER, "reconstruct", call.body)
    assert expected["prepared"]["inputs"][0] == seen_b64
    item = expected["results"][0]
    box = page.locator("#anomaly")
    assert float(box.get_attribute("data-score") or "nan") == pytest.approx(item["error"], rel=1e-6)
    assert float(box.get_attribute("data-anomaly-score") or "nan") == pytest.approx(item["anomaly_score"], rel=1e-6)
    expect(box).to_contain_text(f"anomaly score {js_number(item['anomaly_score'], 3)}")
    expect(box).to_contain_text("Anomalous" if item["is_anomaly"] else "Normal")
    expect(box).to_contain_text("threshold")
    screenshot(page, "05-reconstruct-digit")


def test_reconstruction_shows_the_anomalous_verdict_for_a_cifar_photo_the_server_flags(
    page: Page, server, anomalous_photo: Path
) -> None:
    open_model(page, server, MNIST_AUTOENCODER)
    calls = TaskCalls(page, "reconstruct")
    page.set_input_files("#file-input", str(anomalous_photo))
    wait_done(page, "reconstruct")
    box = page.locator("#anomaly")
    expect(box).to_contain_text("Anomalous")
    expect(box).to_have_class(re.compile(r"\bwarn\b"))
    item = calls[-1].json()["results"][0]
    assert item["is_anomaly"] is True
    assert float(box.get_attribute("data-score") or "nan") == pytest.approx(item["error"], rel=1e-6)
    assert calls[-1].body == anomalous_photo.read_bytes()
    assert decode(shown_png(page, "rc-input")).shape == (28, 28)
    screenshot(page, "06-reconstruct-anomaly")


def test_a_model_without_an_anomaly_map_gets_the_squared_error_computed_in_the_page_and_says_so(
    page: Page, tmp_path: Path
) -> None:
    from tests.service.models import AUTOENCODER, random_images, write_autoencoder

    repository = tmp_path / "models"
    write_autoencoder(repository)
    own = start_server(tmp_path / "server.log", repository=repository)
    try:
        open_model(page, own, AUTOENCODER)
        calls = TaskCalls(page, "reconstruct")
        upload = png_bytes(random_images(1, seed=3)[0, ..., 0])
        page.set_input_files("#file-input", files=[{"name": "noise.png", "mimeType": "image/png", "buffer": upload}])
        wait_done(page, "reconstruct")
        item = calls[-1].json()["results"][0]
        assert "anomaly_map" not in item or item["anomaly_map"] is None
        expect(page.locator("#heatmap-legend")).to_have_attribute("data-source", "browser")
        expect(page.locator("#heatmap-title")).to_have_text("Squared error")
        expect(page.locator("#heatmap-source")).to_contain_text("no anomaly_map output")
        seen, output = (decode(b).astype(np.float64) / 255 for b in (shown_png(page, "rc-input"), item["image"]))
        largest = float(page.locator("#heatmap-scale").inner_text())
        assert largest == pytest.approx(((seen - output) ** 2).max(), rel=5e-3)
    finally:
        own.close()


def test_model_card_shows_the_trust_evidence_model_json_records(page: Page, server) -> None:
    require_models(MNIST_CLASSIFIER, MNIST_AUTOENCODER)
    open_model(page, server, MNIST_CLASSIFIER)
    spec = httpx.get(f"{server.url}/v1/models/{MNIST_CLASSIFIER}", timeout=10).json()["spec"]
    trust = page.locator("#model-trust")
    expect(trust).to_be_visible()
    calibration = trust.locator("[data-trust='calibration']")
    expect(calibration).to_contain_text(f"T = {js_number(spec['calibration']['temperature'], 3)}")
    expect(calibration).to_contain_text("in the graph" if spec["calibration"]["in_graph"] else "not in the graph")
    ood = trust.locator("[data-trust='ood']")
    expect(ood).to_contain_text(f"{100 * spec['pairing']['ood']['detection']['auroc']:.1f}%")
    for name in spec["pairing"]["ood"]["detection"]["foreign"]:
        expect(ood).to_contain_text(name)
    variants = trust.locator("[data-trust='variants'] tbody tr")
    expect(variants).to_have_count(len(spec["quality"]["variants"]))
    golden = trust.locator("[data-trust='golden']")
    expect(golden).to_contain_text(spec["golden"]["sha256"][:12])
    expect(golden).to_contain_text(f"{spec['golden']['samples']:,} images")
    expect(trust.locator("[data-trust='drift']")).to_contain_text(f"{spec['drift']['samples']:,} test images")
    screenshot(page, "01b-model-card-trust")

    open_model(page, server, MNIST_AUTOENCODER)
    anomaly = httpx.get(f"{server.url}/v1/models/{MNIST_AUTOENCODER}", timeout=10).json()["spec"]["anomaly"]
    block = page.locator("#model-trust [data-trust='anomaly']")
    expect(block).to_contain_text(f"{100 * anomaly['detection']['auroc']:.1f}%")
    expect(block).to_contain_text(f"p{anomaly['percentile']:g}" if anomaly["mode"] == "percentile" else "F")


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
    expect(page.locator("#input-size")).to_contain_text("the browser cannot display this file")
    screenshot(page, "07-corrupt-upload")


def test_corrupt_upload_for_a_denoiser_shows_the_servers_error_and_blanks_the_last_output(page: Page, server) -> None:
    """The server is the one decoder: the file goes to it as it is, and nothing of the previous input stays."""
    require_models(MNIST_DENOISER)
    open_model(page, server, MNIST_DENOISER)
    page.get_by_role("button", name="Digit 3").click()
    wait_done(page, "denoise")
    expect(page.locator("#dn-output[src]")).to_have_count(1)
    calls = TaskCalls(page, "denoise")
    page.set_input_files("#file-input", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": CORRUPT_PNG}])
    message = page.locator("#denoise-error")
    expect(message).to_contain_text("The server rejected the input")
    expect(message).to_contain_text("HTTP 400")
    for figure in ("dn-original", "dn-noisy", "dn-output"):
        expect(page.locator(f"#{figure}:not([src])")).to_have_count(1)
    expect(page.locator("#psnr-denoised")).to_have_text("")
    assert len(calls) == 1 and calls[0].body == CORRUPT_PNG
    screenshot(page, "07-corrupt-upload-denoiser")


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
