"""Payloads -> output rows through the core's task calls, with one bad image costing one row, not a batch.

The core fails a whole request when any of its images fails to decode. So each file is decoded and checked
alone with `images.decode_image` (the function the core itself uses), and only the images that pass go to the
core, stacked as one uint8 tensor: the core validates it, batches it, runs it and postprocesses it as it
does for a server request. Arrays from .npz go to the core as tensors directly; should the core refuse a tensor
request, its images are retried one by one so only the offending ones become error rows.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..core import images
from ..core.types import (
    MAX_IMAGE_PIXELS,
    Applied,
    Classification,
    Encoding,
    ImageInputs,
    ModelRef,
    Reconstruction,
    TaskName,
    TaskResult,
)
from ..errors import InvalidInput
from .job import Target
from .rows import Row, error_row, result_rows
from .sources import Entry, Payload


class TaskRunner(Protocol):
    """The part of `core.types.Core` scoring calls; the gRPC client offers the same calls remotely."""

    async def classify(
        self, ref: ModelRef, inputs: ImageInputs, *, top_k: int | None = None
    ) -> TaskResult[Classification]: ...

    async def denoise(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]: ...

    async def reconstruct(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]: ...

    async def encode(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Encoding]: ...


def output_image_path(images_dir: Path, entry_id: int | str) -> Path:
    """Where a denoised image goes: the input's relative path with a .png suffix (never outside images_dir)."""
    parts = [p for p in PurePosixPath(str(entry_id)).parts if p not in ("/", ".", "..")] or ["_"]
    name = PurePosixPath(*parts)
    if name.suffix.lower() != ".png":
        name = name.with_suffix(".png") if name.suffix else PurePosixPath(f"{name}.png")
    return images_dir / name


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


class Scorer:
    def __init__(
        self,
        runner: TaskRunner,
        target: Target,
        *,
        task: TaskName,
        top_k: int | None = None,
        exact_size: bool = False,
        mode: Applied | None = None,
        images_dir: Path | None = None,
        max_pixels: int = MAX_IMAGE_PIXELS,
        request_size: int = 1024,
    ) -> None:
        self.runner = runner
        self.target = target
        self.ref = ModelRef(target.name, target.version)
        self.task = task
        self.top_k = top_k
        self.exact_size = exact_size
        self.mode = mode
        self.images_dir = images_dir
        self.max_pixels = max_pixels
        self.request_size = request_size

    async def score(self, entries: Sequence[Entry], payloads: Sequence[Payload]) -> list[Row]:
        """One row per entry, in entry order."""
        prepared = await asyncio.to_thread(self._prepare, payloads)
        rows: list[Row | None] = [None] * len(entries)
        valid = []
        for i, item in enumerate(prepared):
            if isinstance(item, InvalidInput):
                rows[i] = self._error_row(entries[i], item.message)
            else:
                valid.append(i)
        chunks = [valid[start : start + self.request_size] for start in range(0, len(valid), self.request_size)]
        await asyncio.gather(*(self._run(entries, prepared, chunk, rows) for chunk in chunks))
        return [row for row in rows if row is not None]

    def _prepare(self, payloads: Sequence[Payload]) -> list[np.ndarray | InvalidInput]:
        """Decode files one by one, as the core would, so a failure stays with its own image."""
        pre = self.target.preprocessing
        out: list[np.ndarray | InvalidInput] = []
        for payload in payloads:
            if isinstance(payload, InvalidInput | np.ndarray):
                out.append(payload)
                continue
            try:
                if self.exact_size:
                    self._check_size(payload)
                out.append(images.decode_image(payload, pre, max_pixels=self.max_pixels, mode=self.mode))
            except InvalidInput as exc:  # PayloadTooLarge included
                out.append(InvalidInput(exc.message.replace("image 0 ", "image ", 1)))
        return out

    def _check_size(self, data: bytes) -> None:
        pre = self.target.preprocessing
        images.sniff_format(data)
        try:
            size = Image.open(io.BytesIO(data)).size
        except Exception:  # undecodable: decode_image reports it in its own words
            return
        if size != (pre.width, pre.height):
            raise InvalidInput(f"image is {size[0]}x{size[1]}, the model takes {pre.width}x{pre.height} (--exact-size)")

    async def _run(
        self, entries: Sequence[Entry], prepared: Sequence[Any], chunk: list[int], rows: list[Row | None]
    ) -> None:
        tensor = np.stack([prepared[i] for i in chunk]) if len(chunk) > 1 else prepared[chunk[0]][np.newaxis]
        try:
            result = await self.call(ImageInputs(tensor=tensor))
        except InvalidInput as exc:
            if len(chunk) == 1:
                rows[chunk[0]] = self._error_row(entries[chunk[0]], exc.message)
                return
            for i in chunk:  # find which images the core refuses; the rest still get scored
                await self._run(entries, prepared, [i], rows)
            return
        built = await asyncio.to_thread(self._rows, [entries[i] for i in chunk], result)
        for i, row in zip(chunk, built, strict=True):
            rows[i] = row

    async def call(self, inputs: ImageInputs) -> TaskResult[Any]:
        if self.task == "classify":
            return await self.runner.classify(self.ref, inputs, top_k=self.top_k)
        if self.task == "denoise":
            return await self.runner.denoise(self.ref, inputs)
        if self.task == "reconstruct":
            return await self.runner.reconstruct(self.ref, inputs)
        return await self.runner.encode(self.ref, inputs)

    # -- rows --------------------------------------------------------------------------------------------

    def _error_row(self, entry: Entry, reason: str) -> Row:
        return error_row(entry.id, entry.path, self.target.name, self.target.version, reason)

    def _rows(self, entries: Sequence[Entry], result: TaskResult[Any]) -> list[Row]:
        def save(index: int, item: Reconstruction) -> str:
            return str(self._save(entries[index], item.image))

        ids, paths = [e.id for e in entries], [e.path for e in entries]
        return result_rows(result, self.task, ids, paths, save=save)

    def _save(self, entry: Entry, image: np.ndarray) -> Path:
        if self.images_dir is None:
            raise ValueError("denoising needs an images directory")
        path = output_image_path(self.images_dir, entry.id)
        _write_atomic(path, images.encode_png(image))
        return path
