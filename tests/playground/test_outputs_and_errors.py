"""The playground page in Chromium against the real server and the default models: denoising, reconstruction
with its anomaly verdict, the model card's trust evidence, the server's errors shown as they are, and an API key.
Every step leaves a screenshot in test-artifacts/playground/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.playground.conftest import (
    API_KEY,
    CIFAR_DENOISER,
    DEFAULT_REPOSITORY,
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
from tests.playground.page import (
    CORRUPT_PNG,
    DIGIT_STROKES,
    PAD_SIDE,
    api_task,
    assert_centred_digit,
    draw,
    js_number,
    open_model,
    psnr,
    wait_done,
)


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
    declared = max((DEFAULT_REPOSITORY / model).glob("*/model.json"), key=lambda f: int(f.parent.name))
    resize = json.loads(declared.read_text())["preprocessing"]["resize"]  # CIFAR-10 crops photos, MNIST stretches
    applied = first.json()["prepared"]
    assert (applied["resize"], applied["normalize"]) == (resize, "none")
    expect(page.locator("#denoise-prepared")).to_contain_text(f"no normalisation, {resize}")
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
