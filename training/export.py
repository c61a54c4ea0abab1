"""ONNX export: uint8 NHWC `image` in, preprocessing inside the graph, a parity check, then model.json.

The serving wrapper takes raw uint8 pixels, so the service never scales or normalises anything itself and
cannot drift from training. An export whose onnxruntime output differs from Keras fails.
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from keras import layers, ops

from pixelserve.modelspec import (
    INPUT_IMAGE,
    MODEL_FILE,
    OUTPUT_ERROR,
    OUTPUT_LATENT,
    OUTPUT_PROBABILITIES,
    OUTPUT_RECONSTRUCTION,
    DatasetInfo,
    ModelSpec,
    Pairing,
    Parity,
    Preprocessing,
    Quality,
    TensorSpec,
)

from . import evaluate, plots, trust
from .data import Dataset
from .recipes import Recipe, preprocessing_of
from .versions import next_version

log = logging.getLogger(__name__)


class ParityError(Exception):
    """onnxruntime disagrees with Keras beyond the tolerance: the exported graph is not the trained model."""


@dataclass(frozen=True)
class Normalization:
    mean: list[float]
    std: list[float]


def serving_model(core: keras.Model, recipe: Recipe, image_shape: tuple[int, int, int]) -> keras.Model:
    """Wrap the float [0,1] network so the graph takes uint8 pixels and returns named outputs."""
    image = keras.Input(image_shape, dtype="uint8", name=INPUT_IMAGE)
    x = layers.Rescaling(1.0 / 255.0, name="scale")(ops.cast(image, "float32"))
    if recipe.task == "classify":
        probabilities = _test_time_average(core, x, recipe)
        return keras.Model(image, {OUTPUT_PROBABILITIES: probabilities}, name=recipe.name.replace("-", "_"))
    if recipe.tta_dihedral:
        reconstruction, latent = _dihedral_average(core, x)
    else:
        result = core(x)
        reconstruction, latent = (result[0], result[1]) if isinstance(result, (list, tuple)) else (result, None)
    outputs = {
        OUTPUT_RECONSTRUCTION: reconstruction,
        OUTPUT_ERROR: ops.mean(ops.square(reconstruction - x), axis=(1, 2, 3)),
    }
    if latent is not None:
        outputs[OUTPUT_LATENT] = latent
    return keras.Model(image, outputs, name=recipe.name.replace("-", "_"))


def _test_time_average(core: keras.Model, x, recipe: Recipe):
    """The weighted mean prediction over the recipe's test-time views, from one batched call of the network.

    Views (airbench): the image and its mirror; with tta_translate, also the pair shifted up-left and the pair
    shifted down-right (reflected borders), the shifted views sharing half the weight.
    """
    views, weights = [x], [1.0]
    if recipe.tta_translate:
        t, (height, width) = recipe.tta_translate, x.shape[1:3]
        padded = ops.pad(x, [[0, 0], [t, t], [t, t], [0, 0]], mode="reflect")
        views += [padded[:, :height, :width, :], padded[:, 2 * t :, 2 * t :, :]]
        weights = [0.5, 0.25, 0.25]
    if recipe.tta_flip:
        views += [ops.flip(v, axis=2) for v in views]
        weights = [w / 2 for w in weights] * 2
    if len(views) == 1:
        return core(x)
    predictions = core(ops.concatenate(views, axis=0))
    predictions = ops.reshape(predictions, (len(views), -1, predictions.shape[-1]))
    return sum(w * predictions[i] for i, w in enumerate(weights))


def _dihedral_views(x):
    """The 8 mirror/quarter-turn views of a square NHWC batch, each an exact pixel permutation."""
    transposed = ops.transpose(x, (0, 2, 1, 3))
    return [
        v
        for base in (x, transposed)
        for v in (base, ops.flip(base, 1), ops.flip(base, 2), ops.flip(ops.flip(base, 1), 2))
    ]


def _undo_dihedral(views):
    """Each view's output put back in the original orientation (every transform is its own inverse, applied in
    reverse order)."""
    undone = []
    for i, v in enumerate(views):
        v = ops.flip(v, 1) if i % 4 in (1, 3) else v
        v = ops.flip(v, 2) if i % 4 in (2, 3) else v
        undone.append(ops.transpose(v, (0, 2, 1, 3)) if i >= 4 else v)
    return undone


def _dihedral_average(core: keras.Model, x):
    """Self-ensemble (Timofte et al. 2016, used by EDSR and DnCNN papers): the autoencoder runs once, batched, on
    the 8 views; their outputs, turned back, are averaged. The latent is the unchanged view's."""
    views = _dihedral_views(x)
    result = core(ops.concatenate(views, axis=0))
    reconstruction, latent = (result[0], result[1]) if isinstance(result, (list, tuple)) else (result, None)
    outputs = ops.split(reconstruction, 8, axis=0)
    mean = sum(_undo_dihedral(outputs)) / 8.0
    return mean, (ops.split(latent, 8, axis=0)[0] if latent is not None else None)


def export_model(
    core: keras.Model,
    recipe: Recipe,
    data: Dataset,
    repository: Path,
    *,
    normalization: Normalization | None,
    history: dict[str, list[float]],
    training_info: dict[str, Any],
    version: int | None = None,
    data_dir: Path | None = None,
) -> Path:
    """Export, check parity, measure quality on the test split, add the trust evidence (training/trust.py,
    measured on the final graph) and write the model version directory."""
    model_dir = repository / recipe.name
    version = version or next_version(model_dir)
    target = model_dir / str(version)
    if target.exists():
        raise FileExistsError(f"{target} already exists; pass another --version")
    wrapper = serving_model(core, recipe, data.image_shape)

    with tempfile.TemporaryDirectory(prefix="pixelserve-export-") as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        onnx_path = staging / MODEL_FILE
        signature = [tf.TensorSpec((None, *data.image_shape), tf.uint8, name=INPUT_IMAGE)]
        wrapper.export(
            str(onnx_path), format="onnx", input_signature=signature, opset_version=recipe.opset, verbose=False
        )
        graph_inputs, graph_outputs = _graph_tensors(onnx_path)
        session = evaluate.cpu_session(onnx_path)
        parity = check_parity(wrapper, session, data.x_test[: recipe.parity_samples], recipe.parity_tolerance)
        quality, extras = measure(session, recipe, data, staging)
        plots.learning_curves(history, staging / plots.LEARNING_CURVES)
        spec = ModelSpec(
            name=recipe.name,
            version=version,
            task=recipe.task,
            description=recipe.description,
            inputs=graph_inputs,
            outputs=graph_outputs,
            labels=data.labels if recipe.task == "classify" else None,
            preprocessing=_preprocessing(data, recipe, normalization),
            quality=quality,
            anomaly=extras.get("anomaly"),
            pairing=Pairing(ood_model=recipe.ood_model) if recipe.ood_model else None,
            parity=parity,
            dataset=DatasetInfo(name=data.name, source=Path(data.source).name, sha256=data.sha256),
            recipe=recipe.to_dict(),
            frameworks=_frameworks(),
            training=training_info,
            parameters=int(core.count_params()),
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            artifacts=sorted(p.name for p in staging.glob("*.png")),
        )
        spec = trust.finish(staging, spec, recipe, data, data_dir, repository, extras.get("test_probabilities"))
        spec.write(staging)  # last: the digests of every other file, so a server can prove the version whole
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(target))
    log.info("exported %s to %s", recipe.name, target)
    return target


_ONNX_DTYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.FLOAT: "float32"}


def _graph_tensors(onnx_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    graph = onnx.load(str(onnx_path)).graph

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        return TensorSpec(name=value.name, dtype=_ONNX_DTYPES[tensor.elem_type], shape=shape)

    return [spec(v) for v in graph.input], [spec(v) for v in graph.output]


def check_parity(wrapper: keras.Model, session: ort.InferenceSession, images: np.ndarray, tolerance: float) -> Parity:
    expected = wrapper.predict(images, batch_size=256, verbose=0)
    names = list(expected)
    got = dict(zip(names, session.run(names, {INPUT_IMAGE: images}), strict=True))
    diff = max(float(np.abs(np.asarray(expected[n]) - got[n]).max()) for n in names)
    parity = Parity(samples=len(images), max_abs_diff=diff, tolerance=tolerance, passed=diff <= tolerance)
    if not parity.passed:
        raise ParityError(f"onnxruntime differs from Keras by {diff:.3g} > {tolerance:g} on {len(images)} images")
    return parity


def measure(session: ort.InferenceSession, recipe: Recipe, data: Dataset, out: Path) -> tuple[Quality, dict]:
    """Quality on the test split with the exported graph, plus the plots that go with it."""
    dataset_name = "CIFAR-10 (JPEG copy)" if data.name == "cifar10" and "jpeg" in data.source else data.name
    clean = data.x_test
    metrics, classes = evaluate.task_metrics(
        session, recipe.task, clean, data.y_test, data.labels, recipe.sigmas, recipe.seed
    )
    if classes is not None:
        plots.confusion_matrix(classes.confusion, data.labels, out / plots.CONFUSION_MATRIX)
        quality = Quality(dataset=dataset_name, samples=len(clean), metrics=metrics, per_class=classes.per_class)
        return quality, {"test_probabilities": classes.probabilities}  # reused by the trust steps

    extras: dict[str, Any] = {}
    if recipe.task == "denoise":
        shown = evaluate.add_noise(clean[:10], recipe.noise_sigma, seed=recipe.seed)
        notes = f"noise is Gaussian on [0,1] pixels, clipped and quantised to uint8, seed {recipe.seed}"
    else:
        calibration = _validation_images(data, recipe)
        extras["anomaly"] = evaluate.anomaly_threshold(
            evaluate.reconstruction_errors(session, calibration),
            evaluate.reconstruction_errors(session, clean),
            recipe.anomaly_percentile,
            split=f"held-out {len(calibration)} training images (validation split)",
        )
        shown = clean[:10]
        notes = "clean reconstruction"
    notes += "; PSNR is the mean of per-image PSNR (data range 1)"
    output = evaluate.run_batched(session, shown, OUTPUT_RECONSTRUCTION)
    rows = [("original", clean[:10])] + ([("noisy", shown)] if recipe.task == "denoise" else []) + [("output", output)]
    plots.reconstruction_grid(rows, out / plots.RECONSTRUCTIONS)
    return Quality(dataset=dataset_name, samples=len(clean), metrics=metrics, notes=notes), extras


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): one seeded permutation shared by training and anomaly calibration."""
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * fraction)
    return order[cut:], order[:cut]


def _validation_images(data: Dataset, recipe: Recipe) -> np.ndarray:
    _, held_out = validation_split(len(data.x_train), recipe.validation_split, recipe.held_out_seed)
    return data.x_train[held_out]


def _preprocessing(data: Dataset, recipe: Recipe, normalization: Normalization | None) -> Preprocessing:
    height, width, channels = data.image_shape
    steps = ["cast uint8 -> float32", "scale 1/255 to [0, 1]"]
    if normalization is not None:
        steps.append(f"normalize per channel: mean {normalization.mean}, std {normalization.std}")
    if recipe.tta_flip and not recipe.tta_translate:
        steps.append("test-time augmentation: mean of the image and its horizontal mirror")
    elif recipe.tta_translate:
        mirrored = " and their mirrors" if recipe.tta_flip else ""
        steps.append(
            f"test-time augmentation: weighted mean over the image, the image shifted {recipe.tta_translate} px "
            f"up-left and down-right (reflected borders){mirrored}; half the weight on the unshifted view"
        )
    if recipe.tta_dihedral:
        steps.append("test-time augmentation: mean of the outputs for the 8 mirror/quarter-turn views, turned back")
    resize, normalize = preprocessing_of(recipe)
    return Preprocessing(
        color_mode="grayscale" if channels == 1 else "rgb",
        height=height,
        width=width,
        resize=resize,  # type: ignore[arg-type]
        normalize=normalize,  # type: ignore[arg-type]
        in_graph=steps,
        output_range=None if recipe.task == "classify" else (0.0, 1.0),
    )


def _frameworks() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
