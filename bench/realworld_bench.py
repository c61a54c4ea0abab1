"""Real-world images against the committed classifiers: accuracy of each preprocessing choice, per variant.

    PIXELSERVE_CACHE_DIR=.cache python -m bench.realworld_bench --count 1000

Makes the variants of pixelserve.training.variants from the real test splits (MNIST from mnist.npz, CIFAR-10 from
the JPEG copy), runs each file through pixelserve.imaging.prepare with every relevant resize / normalize mode and
the committed ONNX models on onnxruntime directly, and prints a markdown table: accuracy, and the CPU time prepare
took per image (decode included, inference not; one thread). "today" is what service/images.py did before
issue 11: no EXIF orientation, the whole image stretched to the model's size, no digit normalisation. Unless a row
says otherwise, prepare's defaults apply: letterbox fills by reflection, center-crop and letterbox resample with
Lanczos, stretch with bilinear, large JPEGs are decoded at reduced scale (draft).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from pixelserve import imaging
from pixelserve.training import variants
from pixelserve.training.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
MAX_PIXELS = 4096 * 4096
Prepare = Callable[[bytes], np.ndarray]


@dataclass(frozen=True)
class Model:
    name: str
    session: ort.InferenceSession
    color_mode: imaging.ColorMode
    size: int

    def accuracy(self, batch: np.ndarray, labels: np.ndarray, chunk: int = 250) -> float:
        predictions = [
            self.session.run(["probabilities"], {"image": batch[i : i + chunk]})[0].argmax(axis=1)
            for i in range(0, len(batch), chunk)
        ]
        return float((np.concatenate(predictions) == labels).mean())


def load_model(repository: Path, name: str, color_mode: imaging.ColorMode, size: int, threads: int) -> Model:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    path = repository / name / "1" / "model.onnx"
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Model(name, session, color_mode, size)


def today(model: Model) -> Prepare:
    """service/images.py before issue 11: first frame, conversion rules, the whole image stretched; EXIF ignored."""

    def run(data: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(data))
        image.seek(0)
        image.load()
        return imaging.resize_to(imaging.to_color_mode(image, model.color_mode), model.size, model.size, "stretch")

    return run


def with_modes(model: Model, resize: imaging.ResizeMode, normalize: imaging.NormalizeMode = "none") -> Prepare:
    def run(data: bytes) -> np.ndarray:
        return imaging.prepare(
            data,
            color_mode=model.color_mode,
            height=model.size,
            width=model.size,
            resize=resize,
            normalize=normalize,
            max_pixels=MAX_PIXELS,
        )

    return run


def variation(
    model: Model,
    resize: imaging.ResizeMode,
    *,
    pad: imaging.PadMode = "reflect",
    resample: Image.Resampling | None = None,
    draft: bool = True,
) -> Prepare:
    """prepare's steps with one choice changed: the letterbox fill, the filter, or JPEGs decoded at full size."""

    def run(data: bytes) -> np.ndarray:
        size = imaging.draft_size(model.size, model.size, "none") if draft else None
        converted = imaging.to_color_mode(imaging.decode(data, max_pixels=MAX_PIXELS, draft=size), model.color_mode)
        return imaging.resize_to(converted, model.size, model.size, resize, pad=pad, resample=resample)

    return run


def mnist_setups(model: Model) -> dict[str, Prepare]:
    return {
        "today": today(model),
        "stretch": with_modes(model, "stretch"),
        "center-crop": with_modes(model, "center-crop"),
        "letterbox": with_modes(model, "letterbox"),
        "digit": with_modes(model, "stretch", "digit"),
    }


def cifar_setups(model: Model, photo: bool) -> dict[str, Prepare]:
    """Every mode; for the photo variant (the only one not already 32x32) also each fill, filter and full decoding."""
    setups = {
        "today": today(model),
        "stretch": with_modes(model, "stretch"),
        "center-crop": with_modes(model, "center-crop"),
        "letterbox": with_modes(model, "letterbox"),
    }
    if not photo:
        return setups
    bilinear, lanczos = Image.Resampling.BILINEAR, Image.Resampling.LANCZOS
    return setups | {
        "stretch, lanczos": variation(model, "stretch", resample=lanczos),
        "center-crop, bilinear": variation(model, "center-crop", resample=bilinear),
        "center-crop, full-size decode": variation(model, "center-crop", draft=False),
        "letterbox, bilinear": variation(model, "letterbox", resample=bilinear),
        "letterbox, edge fill": variation(model, "letterbox", pad="edge"),
        "letterbox, mean fill": variation(model, "letterbox", pad="mean"),
        "letterbox, black fill": variation(model, "letterbox", pad="black"),
    }


def measure(model: Model, variant: variants.Variant, setups: dict[str, Prepare]) -> list[tuple[str, ...]]:
    rows = []
    for label, prepare in setups.items():
        start = time.process_time()  # CPU time: steadier than wall time on a shared machine
        batch = np.stack([prepare(data) for data in variant.images])
        per_image = (time.process_time() - start) / len(variant) * 1e3
        accuracy = model.accuracy(batch, variant.labels)
        rows.append((model.name, variant.name, str(len(variant)), label, f"{accuracy:.2%}", f"{per_image:.2f}"))
        print(f"  {variant.name:16} {label:30} {accuracy:.2%}  {per_image:.2f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="images per variant (printed: all fonts x digits x 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PIXELSERVE_DATA_DIR", DATA)))
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = parser.parse_args()

    with np.load(args.data_dir / "mnist.npz") as mnist:
        mx, my = mnist["x_test"], mnist["y_test"].astype(np.int64)
    cifar = load_dataset("cifar10", args.data_dir)
    cx, cy = cifar.x_test, cifar.y_test
    mnist_model = load_model(args.model_repository, "mnist-classifier", "grayscale", 28, args.threads)
    cifar_model = load_model(args.model_repository, "cifar10-classifier", "rgb", 32, args.threads)

    n, seed = args.count, args.seed
    mnist_variants = [
        variants.plain("mnist-test", mx, my, n, seed),
        variants.plain("mnist-test, JPEG q75", mx, my, n, seed, jpeg_quality=75),
        variants.mnist_paper(mx, my, n, seed),
        variants.mnist_grey_paper_jpeg(mx, my, n, seed),
        variants.printed_digits(None, seed),
    ]
    cifar_variants = [
        variants.plain("cifar10-test (JPEG copy)", cx, cy, n, seed),
        variants.cifar_exif_rotated(cx, cy, n, seed),
        variants.cifar_photo_4x3(cx, cy, n, seed),
    ]
    rows = []
    for variant in mnist_variants:
        rows += measure(mnist_model, variant, mnist_setups(mnist_model))
    for variant in cifar_variants:
        rows += measure(cifar_model, variant, cifar_setups(cifar_model, photo=variant.name == "photo-4x3"))

    print(f"\nseed {seed}; {platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}\n")
    header = ("model", "variant", "images", "preprocessing", "accuracy", "prepare CPU ms/image")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
