"""The playground page in Chromium against the real server and the default models: drawing a digit, scanning
and uploading images, and the resize override. The page sends every input as it is and shows what the model saw
from the server's answer (`prepared.inputs`); the tests check what it sent, what it shows and the REST API on the
very bytes the page sent. Every step leaves a screenshot in test-artifacts/playground/."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.playground.conftest import (
    CIFAR_CLASSIFIER,
    DEFAULT_MODELS,
    MNIST_CLASSIFIER,
    TaskCalls,
    decode,
    require_models,
    screenshot,
    shown_png,
)
from tests.playground.page import (
    DIGIT_STROKES,
    PAD_SIDE,
    SCAN_INDEX,
    SCAN_SIZE,
    api_task,
    assert_centred_digit,
    assert_ood_flag,
    assert_same_as_api,
    assert_shown_crisp,
    draw,
    encoded,
    open_model,
    wait_done,
)


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
