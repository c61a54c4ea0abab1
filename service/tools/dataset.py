"""`pixelserve dataset`: payload logs -> an image-folder dataset `pixelserve train` reads, closing the loop from
served images back to training.

Each answered image ("ok" rows) is labelled by what people said (a `--labels` file of id or request_id ->
label, or a column of the shards they filled in), else by the model's own prediction; it is re-encoded as PNG
into `<output>/train/<class>/<id>.png` or `<output>/test/<class>/<id>.png` by a seeded split per class, so every
class lands in both splits as the training loader requires. Images can keep the size they came in (then they
must all share one) or be prepared exactly as the server prepared them (`--model-repository`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from pydantic_settings import CliImplicitFlag, SettingsConfigDict

from pixelserve import imaging
from pixelserve.commandline import CommandSettings, parse
from pixelserve.modelspec import SPEC_FILE, ModelSpec

from ..core.images import encode_png
from ..core.types import MAX_IMAGE_PIXELS
from ..observe.payloads.shards import read_rows, safe_name, shard_files

EXIT_OK = 0
EXIT_FAILED = 1  # nothing usable in the logs, or images of several sizes
EXIT_USAGE = 2  # bad flags, no shards, an output that is not empty, a missing extra
SPLITS = ("train", "test")
COLUMNS = ("id", "request_id", "model", "version", "status", "label", "probability", "image", "resize", "normalize")


class DatasetError(Exception):
    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class DatasetSettings(CommandSettings):
    """Turn payload logs into an image-folder dataset: <output>/train/<class>/<id>.png and <output>/test/...

    Rows with status "ok" are kept. Labels: by default (--label-by auto) a label people gave wins (a --labels
    file, CSV/Parquet/JSONL with a `label` column and an `id` or `request_id` column, or a --label-column of the
    shards), else the model's prediction; --label-by labels keeps only labelled images, --label-by prediction
    ignores given labels. Train on it with: pixelserve train RECIPE --set dataset=<output>.
    """

    model_config = SettingsConfigDict(cli_prog_name="pixelserve dataset")

    input: Path = Field(description="payload log folder (searched recursively) or one .parquet/.jsonl shard")
    output: Path = Field(description="dataset folder to write (train/ and test/)")
    labels: Path | None = Field(None, description="labels people gave: .csv, .parquet or .jsonl, id/request_id->label")
    label_column: str = Field("true_label", description="a column of the shards holding labels people filled in")
    label_by: Literal["auto", "labels", "prediction"] = Field(
        "auto", description="auto: a given label, else the prediction; labels: given only; prediction: predicted only"
    )
    min_probability: float = Field(0.0, ge=0, le=1, description="skip images predicted with less (prediction labels)")
    model: str | None = Field(None, description="only this model's rows (required when the logs hold several)")
    model_repository: Path | None = Field(
        None, description="prepare images as the server did (the model's size, colours, resize, normalize)"
    )
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of each class put into test/")
    seed: int = Field(0, description="seed of the train/test split")
    overwrite: CliImplicitFlag[bool] = Field(False, description="replace train/ and test/ of an existing output")


# -- labels ----------------------------------------------------------------------------------------------------


@dataclass
class Labels:
    """Labels people gave, by image id and by request id (an image's id wins over its request's)."""

    by_id: dict[str, str] = field(default_factory=dict)
    by_request: dict[str, str] = field(default_factory=dict)

    def find(self, row: dict[str, Any], column: str) -> str | None:
        for value in (
            self.by_id.get(str(row.get("id"))),
            self.by_request.get(str(row.get("request_id"))),
            row.get(column),
        ):
            if value is not None and str(value).strip():
                return str(value).strip()
        return None


def _table_rows(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as f:
            yield from (json.loads(line) for line in f if line.strip())
    else:
        raise DatasetError(f"--labels {path.name}: use a .csv, .parquet or .jsonl file")


def read_labels(path: Path) -> Labels:
    if not path.is_file():
        raise DatasetError(f"--labels {path}: no such file")
    labels = Labels()
    for row in _table_rows(path):
        if "label" not in row or not ({"id", "request_id"} & set(row)):
            raise DatasetError(f"--labels {path}: needs a `label` column and an `id` or `request_id` column")
        label = row["label"]
        if label is None or not str(label).strip():
            continue
        if row.get("id") not in (None, ""):
            labels.by_id[str(row["id"])] = str(label).strip()
        if row.get("request_id") not in (None, ""):
            labels.by_request[str(row["request_id"])] = str(label).strip()
    return labels


def class_folder(label: str) -> str:
    """A label as a folder name: path separators become '_', and it is never hidden, '.' or '..'."""
    name = label.replace("/", "_").replace("\\", "_").replace("\0", "_").strip()
    return "_" + name[1:] if name.startswith(".") else name or "_"


# -- images ----------------------------------------------------------------------------------------------------


class Preparer:
    """Encoded bytes -> uint8 HWC pixels: as the server prepared them for the row's model version (with a
    repository), else at their own size and colours, by the training loader's rules."""

    def __init__(self, repository: Path | None) -> None:
        self.repository = repository
        self.specs: dict[tuple[str, int | None], ModelSpec] = {}
        self.notes: list[str] = []

    def spec(self, model: str, version: int | None) -> ModelSpec:
        key = (model, version)
        if key not in self.specs:
            assert self.repository is not None
            path = self.repository / model / str(version) / SPEC_FILE
            if not path.is_file():
                served = sorted((p for p in (self.repository / model).glob(f"*/{SPEC_FILE}")),
                                key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)  # fmt: skip
                if not served:
                    raise DatasetError(f"--model-repository {self.repository}: no model {model!r} in it")
                path = served[-1]
                self.notes.append(f"{model} version {version} is not in the repository; prepared as {path.parent}")
            self.specs[key] = ModelSpec.load(path)
        return self.specs[key]

    def __call__(self, data: bytes, row: dict[str, Any]) -> np.ndarray:
        if self.repository is None:
            image = imaging.decode(data, max_pixels=MAX_IMAGE_PIXELS)
            grey = image.mode in ("L", "1", "I", "I;16") or image.mode.startswith("I;16")
            pixels = np.asarray(imaging.to_color_mode(image, "grayscale" if grey else "rgb"), dtype=np.uint8)
            return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels
        pre = self.spec(str(row["model"]), row.get("version")).preprocessing
        # A null resize means a tensor, taken as prepared: only its colours are converted.
        resize = row.get("resize") or "stretch"
        return imaging.prepare(
            data, color_mode=pre.color_mode, height=pre.height, width=pre.width,
            resize="stretch" if resize == "none" else resize, normalize=row.get("normalize") or "none",
            max_pixels=MAX_IMAGE_PIXELS,
        )  # fmt: skip


# -- the command -----------------------------------------------------------------------------------------------


@dataclass
class Collected:
    files: dict[str, list[str]] = field(default_factory=dict)  # class folder -> image ids
    shapes: Counter[tuple[int, ...]] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    models: set[str] = field(default_factory=set)


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise DatasetError(f"--output {output} is a file")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise DatasetError(f"--output {output} is not empty; pass --overwrite to replace its train/ and test/")


def _label(row: dict[str, Any], settings: DatasetSettings, labels: Labels, skipped: Counter[str]) -> str | None:
    if settings.label_by != "prediction":
        given = labels.find(row, settings.label_column)
        if given is not None:
            return given
        if settings.label_by == "labels":
            skipped["no label given"] += 1
            return None
    predicted = row.get("label")
    if predicted is None or not str(predicted).strip():
        skipped["no label or prediction"] += 1
        return None
    if (row.get("probability") or 0.0) < settings.min_probability:
        skipped["below --min-probability"] += 1
        return None
    return str(predicted)


def collect(settings: DatasetSettings, labels: Labels, staging: Path) -> Collected:
    """Every usable image written as PNG into staging/<class>/<id>.png."""
    files = shard_files(settings.input)
    if not files:
        raise DatasetError(f"--input {settings.input}: no .parquet or .jsonl shards found")
    if any(f.suffix == ".parquet" for f in files):
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError as exc:
            raise DatasetError(
                f"reading Parquet shards needs pyarrow ({exc}): pip install 'pixelserve[batch]'"
            ) from exc
    prepare = Preparer(settings.model_repository)
    out = Collected()
    seen: set[str] = set()
    folders: dict[str, str] = {}
    for path in files:
        for row in read_rows(path, (*COLUMNS, settings.label_column)):
            if settings.model is not None and row.get("model") != settings.model:
                continue
            out.models.add(str(row.get("model")))
            if len(out.models) > 1:
                names = ", ".join(sorted(out.models))
                raise DatasetError(f"the logs hold several models ({names}); choose one with --model")
            if row.get("status") != "ok":
                out.skipped["error rows"] += 1
                continue
            if not row.get("image"):
                out.skipped["no image"] += 1
                continue
            label = _label(row, settings, labels, out.skipped)
            if label is None:
                continue
            image_id = safe_name(str(row.get("id")))
            if image_id in seen:
                out.skipped["duplicate ids"] += 1
                continue
            try:
                pixels = prepare(row["image"], row)
            except (imaging.ImageError, ValueError) as exc:
                out.skipped["undecodable"] += 1
                print(f"pixelserve dataset: skipped {row.get('id')}: {exc}", file=sys.stderr)
                continue
            folder = class_folder(label)
            if folders.setdefault(folder, label) != label:
                raise DatasetError(f"labels {folders[folder]!r} and {label!r} would share the folder {folder!r}")
            seen.add(image_id)
            (staging / folder).mkdir(parents=True, exist_ok=True)
            (staging / folder / f"{image_id}.png").write_bytes(encode_png(pixels))
            out.files.setdefault(folder, []).append(image_id)
            out.shapes[pixels.shape] += 1
    for note in prepare.notes:
        print(f"pixelserve dataset: {note}", file=sys.stderr)
    return out


def split(files: dict[str, list[str]], fraction: float, seed: int) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """Per class, a seeded share into test (at least one image in each split); classes of one image are left out."""
    rng = np.random.default_rng(seed)
    splits: dict[str, dict[str, list[str]]] = {name: {} for name in SPLITS}
    dropped = []
    for folder in sorted(files):
        ids = sorted(files[folder])
        if len(ids) < 2:
            dropped.append(folder)
            continue
        order = [ids[i] for i in rng.permutation(len(ids))]
        n_test = min(len(ids) - 1, max(1, round(len(ids) * fraction)))
        splits["test"][folder], splits["train"][folder] = sorted(order[:n_test]), sorted(order[n_test:])
    return splits, dropped


def build(settings: DatasetSettings) -> dict[str, dict[str, int]]:
    """Writes the dataset; returns image counts per split and class."""
    _check_output(settings.output, settings.overwrite)
    labels = read_labels(settings.labels) if settings.labels is not None else Labels()
    created = not settings.output.exists()
    settings.output.mkdir(parents=True, exist_ok=True)
    staging = settings.output / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        collected = collect(settings, labels, staging / "all")
        if len(collected.shapes) > 1:
            sizes = ", ".join(f"{'x'.join(map(str, s))} ({n})" for s, n in collected.shapes.most_common())
            raise DatasetError(
                f"images come in several sizes ({sizes}); pass --model-repository to prepare them as the server did",
                EXIT_FAILED,
            )
        splits, dropped = split(collected.files, settings.test_fraction, settings.seed)
        if not splits["train"]:
            skipped = ", ".join(f"{n} {why}" for why, n in collected.skipped.items()) or "no rows"
            raise DatasetError(f"no class has the two images a train/test split needs ({skipped})", EXIT_FAILED)
        for name, classes in splits.items():
            for folder, ids in classes.items():
                (staging / name / folder).mkdir(parents=True)
                for image_id in ids:
                    os.replace(
                        staging / "all" / folder / f"{image_id}.png", staging / name / folder / f"{image_id}.png"
                    )
        for name in SPLITS:
            target = settings.output / name
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / name, target)
    except BaseException:
        shutil.rmtree(settings.output if created else staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    for folder in dropped:
        print(f"pixelserve dataset: class {folder!r} has one image, too few to split; left out", file=sys.stderr)
    for why, count in sorted(collected.skipped.items()):
        print(f"pixelserve dataset: skipped {count} ({why})", file=sys.stderr)
    return {name: {folder: len(ids) for folder, ids in classes.items()} for name, classes in splits.items()}


def report(counts: dict[str, dict[str, int]], output: Path) -> None:
    classes = sorted(counts["train"])
    width = max(len("class"), *(len(c) for c in classes))
    print(f"{'class':<{width}}  {'train':>7}  {'test':>7}")
    for name in classes:
        print(f"{name:<{width}}  {counts['train'][name]:>7}  {counts['test'][name]:>7}")
    totals = [sum(counts[s].values()) for s in SPLITS]
    print(f"{'total':<{width}}  {totals[0]:>7}  {totals[1]:>7}")
    print(f"dataset: {output} (pixelserve train RECIPE --set dataset={output})")


def main(argv: list[str] | None = None) -> int:
    settings = parse(DatasetSettings, argv, "dataset")
    if isinstance(settings, int):
        return settings
    try:
        counts = build(settings)
    except DatasetError as exc:
        print(f"pixelserve dataset: {exc.message}", file=sys.stderr)
        return exc.status
    report(counts, settings.output)
    return EXIT_OK
