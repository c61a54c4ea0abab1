"""The inference core every adapter calls: resolve the model, decode and check inputs, batch, run, shape the
results into plain types. REST, gRPC, V2 and batch scoring only translate their wire formats to these calls.

One request reads straight through: `_request` resolves and holds the served version, `_prepare` decodes,
the version's batcher runs onnxruntime, and the task method shapes the outputs. The core counts requests
(per served version, with where their time went); the batcher counts batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

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

from ..errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    NotPermitted,
    ServiceError,
    ShuttingDown,
)
from ..observe import access_log, payload_tap
from ..observe.drift import DriftMonitor, DriftWindow
from ..observe.metrics import Metrics
from ..process.workers import StatsExchange
from ..repository import ModelRepository, ServedVersion
from ..settings import Settings
from . import images
from .batching import Completed
from .calls import Call, check_task, float32
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
    TaskName,
    TaskResult,
)

if TYPE_CHECKING:  # imported only when they are on
    from ..observe.payloads import LoggedTask, PayloadLog
    from ..observe.tracing import Tracing

T = TypeVar("T")
R = TypeVar("R", TaskResult, InferResult)


class InferenceCore:
    """Implements pixelserve.service.core.types.Core. Build it with `build_core`; `begin_shutdown`, then `close`."""

    def __init__(self, settings: Settings, metrics: Metrics, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracing = tracing  # None: tracing is off and costs nothing
        self.repository = ModelRepository(settings, metrics, tracing=tracing)
        self.limits = images.Limits.from_settings(settings)
        self.offload = Offloader(settings.offload_threads)
        self.stats_exchange: StatsExchange | None = None  # set by the server when it is one of several workers
        self.drift: DriftMonitor | None = None
        if settings.drift_monitoring:
            self.drift = DriftMonitor(
                metrics, self._drift_windows, refresh_s=settings.drift_refresh_s, min_samples=settings.drift_min_samples
            )
        self.payloads: PayloadLog | None = None  # sampled requests into shards, when payload_log_dir is set
        if settings.payload_log_dir is not None:
            from ..observe.payloads import PayloadLog

            self.payloads = PayloadLog.from_settings(settings, on_count=metrics.payload_rows_counted)
        self._in_flight = 0
        self._started = False
        self._draining = False
        self._closed = False

    async def start(self) -> None:
        await self.repository.start()
        if self.drift is not None:
            self.drift.start()
        self._started = True

    def begin_shutdown(self) -> None:
        """Readiness turns false so load balancers stop sending; requests that still arrive are served."""
        self._draining = True

    async def close(self) -> None:
        """Refuse new requests, let the accepted ones finish, release every session."""
        self._draining = True
        self._closed = True
        if self.drift is not None:
            await self.drift.stop()
        await self.repository.close()
        self.offload.close()
        if self.payloads is not None:
            await asyncio.to_thread(self.payloads.close)  # commits every open shard

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- request plumbing --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _request(self, ref: ModelRef, task: TaskName | None, inputs: ImageInputs) -> Iterator[Call]:
        """Hold the served version for one request and count its outcome for V2 statistics."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        self._in_flight += 1
        try:
            with self.repository.lease(ref) as served:
                access_log.note_served(served.name, served.version)
                call = Call(served, inputs)
                try:
                    check_task(served.spec, task)
                    yield call
                except BaseException as error:
                    served.requests.failure_count += 1
                    if self.payloads is not None and isinstance(error, ServiceError):
                        payload_tap.failed(self.payloads, self.tracing, task or "infer", ref, inputs, error)
                    raise
                if self.tracing is not None:
                    self.tracing.core_done()
                done = time.perf_counter()
                served.requests.succeeded(
                    done - call.started, call.prepared - call.started, call.queue_s, call.infer_s, done - call.ran
                )
        finally:
            self._in_flight -= 1

    async def _prepare(self, inputs: ImageInputs, spec: ModelSpec) -> np.ndarray:
        """Decode and check the inputs into the uint8 NHWC batch the model takes, off the event loop when the
        decoded pixels (read from the headers) make it more than a moment's work."""
        pre = spec.preprocessing
        work = images.decode_work(inputs, pre)
        if self.tracing is None:
            return await self.offload.sized(work, images.prepare, inputs, pre, self.limits)
        with self.tracing.child("decode"):
            return await self.offload.sized(work, images.prepare, inputs, pre, self.limits)

    async def _submit(self, served: ServedVersion, batch: np.ndarray, role: str = "") -> Completed:
        """Through the version's batcher; traced as ``queue`` (until its batch starts) and ``compute`` (its
        batch, linked to the batch span), prefixed with `role` for a partner's run."""
        if self.tracing is None:
            return await served.batcher.submit({INPUT_IMAGE: batch})
        submitted = time.time_ns()
        done = await served.batcher.submit({INPUT_IMAGE: batch})
        model = {"pixelserve.model": served.name, "pixelserve.version": served.version}
        self.tracing.span_between(f"{role}queue", submitted, done.batch_start_ns, **model)
        linked = [done.batch_span] if done.batch_span is not None else []
        self.tracing.span_between(f"{role}compute", done.batch_start_ns, done.batch_end_ns, linked, **model)
        return done

    async def _run(self, call: Call, inputs: ImageInputs) -> Feeds:
        batch = call.batch = await self._prepare(inputs, call.served.spec)
        call.mark_prepared()
        done = await self._submit(call.served, batch)
        call.mark_ran(done)
        return done.outputs

    def _drift_windows(self) -> list[tuple[str, int, DriftWindow]]:
        return [(s.name, s.version, s.drift) for s in self.repository.served() if s.drift is not None]

    def _logged(self, task: LoggedTask, inputs: ImageInputs, result: R) -> R:
        """A sampled answer into the payload log (when it is on and the request came through an adapter)."""
        return payload_tap.answered(self.payloads, self.tracing, task, inputs, result)

    @staticmethod
    def _observe(call: Call, predicted: np.ndarray | None = None, scores: np.ndarray | None = None) -> None:
        """The request's model input and answers into its version's drift window, when it keeps one."""
        window = call.served.drift
        if window is not None and call.batch is not None:
            window.observe(call.batch, predicted, scores)

    @contextlib.contextmanager
    def _ood_partner(self, spec: ModelSpec) -> Iterator[ServedVersion | None]:
        """The paired autoencoder when it is served and reports an error; None lets classification go on
        without an OOD score rather than fail because its partner is missing."""
        pairing = spec.pairing
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
        with self._request(ref, "classify", inputs) as call, self._ood_partner(call.served.spec) as partner:
            spec = call.served.spec
            batch = call.batch = await self._prepare(inputs, spec)
            call.mark_prepared()
            runs = [self._submit(call.served, batch)]
            if partner is not None:
                same_input = partner.spec.input.shape[1:] == spec.input.shape[1:]
                ood_batch = batch if same_input else await self._prepare(inputs, partner.spec)
                runs.append(self._submit(partner, ood_batch, "ood."))
            results = await asyncio.gather(*runs)
            call.mark_ran(results[0])
            labels = spec.labels or []
            probabilities = results[0].outputs[OUTPUT_PROBABILITIES]
            k = min(top_k, len(labels))
            ood_errors = None
            if partner is not None:
                ood_errors = anomaly_rule.effective_errors(results[1].outputs[OUTPUT_ERROR], ood_batch)
            anomaly = partner.spec.anomaly if partner is not None else None
            self._observe(call, probabilities.argmax(axis=1), ood_errors)
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
        return self._logged("classify", inputs, call.result(items))

    async def _reconstruct(self, ref: ModelRef, inputs: ImageInputs, task: TaskName) -> TaskResult[Reconstruction]:
        with self._request(ref, task, inputs) as call:
            outputs = await self._run(call, inputs)
            anomaly = call.served.spec.anomaly if task == "reconstruct" else None
            errors = outputs[OUTPUT_ERROR]
            watched = call.served.drift is not None
            effective = anomaly_rule.effective_errors(errors, call.batch) if anomaly or watched else errors
            self._observe(call, None, effective)
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
        return self._logged(task, inputs, call.result(items))

    async def denoise(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]:
        return await self._reconstruct(ref, inputs, "denoise")

    async def reconstruct(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Reconstruction]:
        """Reconstruction plus its error; an anomaly flag when model.json carries a calibrated threshold."""
        return await self._reconstruct(ref, inputs, "reconstruct")

    async def encode(self, ref: ModelRef, inputs: ImageInputs) -> TaskResult[Encoding]:
        with self._request(ref, "encode", inputs) as call:
            outputs = await self._run(call, inputs)
            self._observe(call)
            items = [Encoding(latent=row) for row in outputs[OUTPUT_LATENT]]
        return self._logged("encode", inputs, call.result(items))

    async def infer(self, ref: ModelRef, inputs: ImageInputs, outputs: Sequence[str] | None = None) -> InferResult:
        with self._request(ref, None, inputs) as call:
            spec = call.served.spec
            declared = [o.name for o in spec.outputs]
            unknown = [name for name in outputs or () if name not in declared]
            if unknown:
                raise InvalidInput(f"unknown output(s) {unknown}; model {spec.name!r} has {declared}")
            results = await self._run(call, inputs)
            chosen = {name: results[name] for name in (outputs or declared)}
            if call.served.drift is not None:
                probabilities, errors = results.get(OUTPUT_PROBABILITIES), results.get(OUTPUT_ERROR)
                predicted = None if probabilities is None else probabilities.argmax(axis=1)
                scores = None if errors is None else anomaly_rule.effective_errors(errors, call.batch)
                self._observe(call, predicted, scores)
        done = call.result([])
        return self._logged("infer", inputs, InferResult(done.model, chosen, labels=spec.labels, applied=done.applied))

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


async def build_core(settings: Settings, metrics: Metrics) -> InferenceCore:
    """A core with every model the policy picks loaded and warmed, and hot reload running if enabled."""
    core = InferenceCore(settings, metrics)
    await core.start()
    return core
