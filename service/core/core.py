"""The inference core every adapter calls: resolve the model, decode and check inputs, batch, run, shape the
results into plain types. REST, gRPC, V2 and batch scoring only translate their wire formats to these calls.

One request reads straight through: `_request` resolves and holds the served version, `_prepare` decodes,
the version's batcher runs onnxruntime, and the task method shapes the outputs. Operations (metrics, access
log, tracing, payload log, drift) are hooks (service/hooks.py) that see each request's Call: the core only
records what happened in it. The batcher counts batches; the core keeps each version's V2 statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence

import numpy as np

from pixelserve import anomaly as anomaly_rule
from pixelserve.modelspec import (
    INPUT_IMAGE,
    OUTPUT_ANOMALY_MAP,
    OUTPUT_ERROR,
    OUTPUT_LATENT,
    OUTPUT_PROBABILITIES,
    OUTPUT_RECONSTRUCTION,
    ModelSpec,
)

from ..errors import InvalidInput, ModelNotFound, ModelNotReady, NotPermitted, ShuttingDown
from ..hooks import Hooks
from ..observe.metrics import Metrics
from ..repository import ModelRepository, ServedVersion
from ..settings import Settings
from . import images
from .batching import Completed
from .calls import Call, CallScope, Run, check_task, float32, open_call
from .offload import Offloader
from .runtime import Feeds
from .stats import snapshot
from .types import (
    DEFAULT_TOP_K,
    Classification,
    Encoding,
    ImageInputs,
    InferResult,
    LabelScore,
    ModelInfo,
    ModelRef,
    ModelStats,
    ModelStatus,
    Reconstruction,
    StatsMerger,
    TaskName,
    TaskResult,
)


class InferenceCore:
    """Implements pixelserve.service.core.types.Core. Build it with wiring.build_core;
    `begin_shutdown`, then `close`."""

    def __init__(self, settings: Settings, metrics: Metrics, hooks: Hooks | None = None) -> None:
        """`hooks`: the operations the server wiring registered (service/wiring.py); none for in-process use."""
        self.settings = settings
        self.metrics = metrics
        self.hooks = hooks if hooks is not None else Hooks()
        self.repository = ModelRepository(settings, metrics, on_batch=self.hooks.on_batch)
        self.limits = images.Limits.from_settings(settings)
        self.offload = Offloader(settings.offload_threads)
        self.stats_exchange: StatsMerger | None = None  # set by the server when it is one of several workers
        self._in_flight = 0
        self._started = False
        self._draining = False
        self._closed = False

    async def start(self) -> None:
        await self.repository.start()
        await self.hooks.start(self)
        self._started = True

    def begin_shutdown(self) -> None:
        """Readiness turns false so load balancers stop sending; requests that still arrive are served."""
        self._draining = True

    async def close(self) -> None:
        """Refuse new requests, let the accepted ones finish, release every session."""
        self._draining = True
        self._closed = True
        await self.repository.close()
        self.offload.close()
        await self.hooks.stop()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- request plumbing --------------------------------------------------------------------------------

    def request(self, task: str, model: str, protocol: str) -> CallScope:
        """The scope an adapter opens around one request (see core/calls.py): the hooks see it begin and end."""
        return CallScope(self.hooks, task, model, protocol)

    @contextlib.contextmanager
    def _request(self, ref: ModelRef, task: TaskName | None, inputs: ImageInputs) -> Iterator[Call]:
        """The adapter's open call for this request, or one of our own for in-process callers."""
        call = open_call(task or "infer")
        if call is not None:
            with self._serve(call, ref, task, inputs):
                yield call
            return
        with self.request(task or "infer", ref.name, "") as call, self._serve(call, ref, task, inputs):
            yield call

    @contextlib.contextmanager
    def _serve(self, call: Call, ref: ModelRef, task: TaskName | None, inputs: ImageInputs) -> Iterator[None]:
        """Hold the served version for one request and count its outcome for V2 statistics."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        call.ref, call.inputs = ref, inputs
        self._in_flight += 1
        try:
            with self.repository.lease(ref) as served:
                call.served = served
                try:
                    check_task(served.spec, task)
                    yield
                except BaseException:
                    served.requests.failure_count += 1
                    raise
                done = time.perf_counter()
                served.requests.succeeded(
                    done - call.started, call.prepared - call.started, call.queue_s, call.infer_s, done - call.ran
                )
        finally:
            self._in_flight -= 1

    async def _prepare(self, call: Call, inputs: ImageInputs, spec: ModelSpec) -> np.ndarray:
        """Decode and check the inputs into the uint8 NHWC batch the model takes, off the event loop when the
        decoded pixels (read from the headers) make it more than a moment's work."""
        pre = spec.preprocessing
        call.preparing = call.preparing or time.perf_counter()
        batch = await self.offload.sized(images.decode_work(inputs, pre), images.prepare, inputs, pre, self.limits)
        call.prepared = time.perf_counter()
        return batch

    async def _submit(self, call: Call, served: ServedVersion, batch: np.ndarray, role: str = "") -> Completed:
        """Through the version's batcher, recorded as one of the call's runs."""
        submitted = time.perf_counter()
        done = await served.batcher.submit({INPUT_IMAGE: batch}, call.context)
        call.runs.append(Run(role, served, submitted, done))
        return done

    async def _run(self, call: Call, inputs: ImageInputs) -> Feeds:
        assert call.served is not None
        batch = call.batch = await self._prepare(call, inputs, call.served.spec)
        done = await self._submit(call, call.served, batch)
        call.mark_ran(done)
        return done.outputs

    @contextlib.contextmanager
    def _ood_partner(self, call: Call) -> Iterator[ServedVersion | None]:
        """The paired autoencoder when it is served and reports an error; None lets classification go on
        without an OOD score rather than fail because its partner is missing."""
        pairing = call.served.spec.pairing  # type: ignore[union-attr]
        partner = None
        if pairing is not None:
            with contextlib.suppress(ModelNotFound, ModelNotReady):
                partner = self.repository.resolve(ModelRef(pairing.ood_model, pairing.ood_version))
        if partner is None or not partner.spec.has_output(OUTPUT_ERROR):
            yield None
            return
        with partner.lease():
            yield partner

    # -- tasks -------------------------------------------------------------------------------------------

    async def classify(
        self, ref: ModelRef, inputs: ImageInputs, *, top_k: int | None = None
    ) -> TaskResult[Classification]:
        top_k = DEFAULT_TOP_K if top_k is None else top_k
        if top_k < 1:
            raise InvalidInput(f"top_k must be at least 1, got {top_k}")
        with self._request(ref, "classify", inputs) as call, self._ood_partner(call) as partner:
            spec = call.served.spec  # type: ignore[union-attr]
            batch = call.batch = await self._prepare(call, inputs, spec)
            runs = [self._submit(call, call.served, batch)]  # type: ignore[arg-type]
            if partner is not None:
                same_input = partner.spec.input.shape[1:] == spec.input.shape[1:]
                ood_batch = batch if same_input else await self._prepare(call, inputs, partner.spec)
                runs.append(self._submit(call, partner, ood_batch, "ood."))
            results = await asyncio.gather(*runs)
            call.mark_ran(results[0])
            labels = spec.labels or []
            probabilities = results[0].outputs[OUTPUT_PROBABILITIES]
            k = min(top_k, len(labels))
            ood_errors = None
            if partner is not None:
                ood_errors = anomaly_rule.effective_errors(results[1].outputs[OUTPUT_ERROR], ood_batch)
            anomaly = partner.spec.anomaly if partner is not None else None
            call.predicted, call.scores = probabilities.argmax(axis=1), ood_errors
            items = []
            for i, row in enumerate(probabilities):
                top = np.argsort(-row, kind="stable")[:k]
                score = None if ood_errors is None else float(ood_errors[i])
                verdict = anomaly is not None and score is not None
                items.append(
                    Classification(
                        top=[LabelScore(int(j), labels[j], float(row[j])) for j in top],
                        ood_score=score,
                        ood_threshold=anomaly.value if anomaly else None,
                        is_ood=bool(score > anomaly.value) if verdict else None,
                        anomaly_score=float32(anomaly_rule.normalized_score(score, anomaly.value)) if verdict else None,
                    )
                )
            call.result = call.result_of(items)
        return call.result

    async def _reconstruct(self, ref: ModelRef, inputs: ImageInputs, task: TaskName) -> TaskResult[Reconstruction]:
        with self._request(ref, task, inputs) as call:
            outputs = await self._run(call, inputs)
            anomaly = call.served.spec.anomaly if task == "reconstruct" else None  # type: ignore[union-attr]
            errors = outputs[OUTPUT_ERROR]
            effective = call.scores = anomaly_rule.effective_errors(errors, call.batch)  # type: ignore[arg-type]
            scores = np.float32(anomaly_rule.normalized_score(effective, anomaly.value)) if anomaly else None
            maps = outputs.get(OUTPUT_ANOMALY_MAP)
            items = [
                Reconstruction(
                    image=image,
                    error=float(errors[i]),
                    threshold=anomaly.value if anomaly else None,
                    is_anomaly=bool(effective[i] > anomaly.value) if anomaly else None,
                    anomaly_score=float(scores[i]) if scores is not None else None,
                    anomaly_map=maps[i] if maps is not None else None,
                )
                for i, image in enumerate(outputs[OUTPUT_RECONSTRUCTION])
            ]
            call.result = call.result_of(items)
        return call.result

    async def denoise(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]:
        return await self._reconstruct(ref, inputs, "denoise")

    async def reconstruct(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]:
        """Reconstruction plus its error; an anomaly flag when model.json carries a calibrated threshold."""
        return await self._reconstruct(ref, inputs, "reconstruct")

    async def encode(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Encoding]:
        with self._request(ref, "encode", inputs) as call:
            outputs = await self._run(call, inputs)
            call.result = call.result_of([Encoding(latent=row) for row in outputs[OUTPUT_LATENT]])
        return call.result

    async def infer(self, ref: ModelRef, inputs: ImageInputs, outputs: Sequence[str] | None = None) -> InferResult:
        with self._request(ref, None, inputs) as call:
            spec = call.served.spec  # type: ignore[union-attr]
            declared = [o.name for o in spec.outputs]
            unknown = [name for name in outputs or () if name not in declared]
            if unknown:
                raise InvalidInput(f"unknown output(s) {unknown}; model {spec.name!r} has {declared}")
            results = await self._run(call, inputs)
            chosen = {name: results[name] for name in (outputs or declared)}
            probabilities, errors = results.get(OUTPUT_PROBABILITIES), results.get(OUTPUT_ERROR)
            call.predicted = None if probabilities is None else probabilities.argmax(axis=1)
            call.scores = None if errors is None else anomaly_rule.effective_errors(errors, call.batch)  # type: ignore[arg-type]
            done = call.result_of([])
            call.result = InferResult(done.model, chosen, labels=spec.labels, applied=done.applied)
        return call.result

    # -- metadata and control ----------------------------------------------------------------------------

    def model_info(self, ref: ModelRef) -> ModelInfo:
        return self.repository.info(ref)

    def model_stats(self, ref: ModelRef | None = None) -> list[ModelStats]:
        """This process's counters, or with several workers the sum of every worker's."""
        served = [self.repository.resolve(ref)] if ref is not None else self.repository.served()
        own = self.local_stats(served)
        return self.stats_exchange.merged(own) if self.stats_exchange is not None else own

    def local_stats(self, served: list[ServedVersion] | None = None) -> list[ModelStats]:
        chosen = self.repository.served() if served is None else served
        return [snapshot(s.name, s.version, s.requests, s.batcher.stats) for s in sorted(chosen, key=lambda s: s.name)]

    def index(self) -> list[ModelStatus]:
        return self.repository.index()

    def _check_control(self) -> None:
        if not self.settings.allow_repository_control:
            raise NotPermitted(
                "repository control is off: start the server with --allow-repository-control true "
                "(PIXELSERVE_ALLOW_REPOSITORY_CONTROL) to load and unload models over the API; changes to the "
                "model repository on disk are hot-reloaded either way"
            )
        if self.settings.workers > 1:
            raise NotPermitted(
                f"repository control would reach one of {self.settings.workers} workers: change the model "
                "repository on disk instead, every worker's hot reload applies it"
            )

    async def load(self, name: str) -> None:
        self._check_control()
        await self.repository.load(name)

    async def unload(self, name: str) -> None:
        self._check_control()
        await self.repository.unload(name)

    def is_live(self) -> bool:
        return not self._closed

    def is_ready(self, ref: ModelRef | None = None) -> bool:
        """Server readiness: started, not draining, every model serving. Model readiness: it resolves."""
        if not self._started or self._draining:
            return False
        if ref is None:
            return self.repository.all_ready()
        try:
            self.repository.resolve(ref)
        except (ModelNotFound, ModelNotReady):
            return False
        return True
