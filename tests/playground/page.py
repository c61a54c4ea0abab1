"""What the playground tests do in the page (open a model, draw, wait) and check against the REST API."""

from __future__ import annotations

import io
import re

import httpx
import numpy as np
from PIL import Image
from playwright.sync_api import Page, expect

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
