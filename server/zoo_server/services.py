"""The zoo.v1 servicers: ModelService, InferenceService, FineTuneService.

Handlers raise typed exceptions; `zoo_server.handlers` maps them to status codes. Each
handler validates everything it can (names, top_k, empty batches) before touching a
model, so bad requests are cheap.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
import numpy as np

from zoo.errors import InvalidInputError, ZooError
from zoo.hub.spec import IMAGE_CLASSIFICATION, TEXT_CLASSIFICATION, TEXT_EMBEDDING
from zoo.vision.images import decode
from zoo_api.v1 import (
    common_pb2,
    finetune_pb2,
    finetune_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
)
from zoo_server.config import ServerConfig
from zoo_server.datasets import DatasetStore, Header
from zoo_server.errors import RequestDeadlineError, status_for
from zoo_server.jobs import HYPERPARAMETERS, TERMINAL, JobManager
from zoo_server.metrics import Metrics
from zoo_server.runtime import (
    CLASSIFY,
    IMAGE_EMBED,
    TEXT_CLASSIFY,
    TEXT_EMBED,
    Loaded,
    ModelManager,
)
from zoo_server.store import FINETUNED, REGISTRY, ModelStore, Resolved

TASKS = {
    IMAGE_CLASSIFICATION: common_pb2.IMAGE_CLASSIFICATION,
    TEXT_EMBEDDING: common_pb2.TEXT_EMBEDDING,
    TEXT_CLASSIFICATION: common_pb2.TEXT_CLASSIFICATION,
}
TASK_NAMES = {v: k for k, v in TASKS.items()}
DEFAULT_TOP_K = 5
_BYTES_IO = re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>")
STREAM_WINDOW = 64  # requests of one ClassifyStream in progress at once


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The call's deadline on the time.monotonic() clock; None when it has none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e7:
        return None
    return time.monotonic() + remaining


def wait_result(future: Future[Any], deadline: float | None) -> Any:
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise RequestDeadlineError("the deadline passed while the request waited for its "
                                   "model") from None


def spec_of(resolved: Resolved) -> common_pb2.ModelSpec:
    return common_pb2.ModelSpec(name=resolved.name, version=resolved.version)


def resolve_top_k(top_k: int, num_classes: int | None) -> int:
    n = num_classes or 0
    if top_k == 0:
        return min(DEFAULT_TOP_K, n) if n else DEFAULT_TOP_K
    if top_k < 0 or (n and top_k > n):
        raise InvalidInputError(f"top_k must be between 1 and {n or 'the number of classes'} "
                                f"(0 means {DEFAULT_TOP_K}), got {top_k}")
    return top_k


def top_predictions(probs: np.ndarray, labels: Sequence[str], k: int
                    ) -> list[common_pb2.Prediction]:
    k = min(k, probs.shape[-1])
    idx = np.argpartition(-probs, k - 1)[:k] if k < probs.shape[-1] else np.arange(k)
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    return [common_pb2.Prediction(label=labels[i] if i < len(labels) else str(i),
                                  score=float(probs[i]), index=int(i)) for i in idx]


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    if not texts:
        raise InvalidInputError(f"{what} is empty: send a non-empty list of texts")
    for i, text in enumerate(texts):
        if not text.strip():
            raise InvalidInputError(f"{what}[{i}] is empty or only whitespace")
    return list(texts)


class Inference:
    """What the inference handlers share: the store, the models, the decoding pool."""

    def __init__(self, config: ServerConfig, store: ModelStore, manager: ModelManager):
        self.config, self.store, self.manager = config, store, manager
        self.pool = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="decode")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def decode_one(self, data: bytes, loaded: Loaded, what: str) -> np.ndarray:
        """Encoded bytes -> the model's prepared input (decoded, resized, scaled)."""
        assert loaded.size is not None and loaded.prepare is not None
        return loaded.prepare(self.decode(data, loaded.size, what))

    def decode(self, data: bytes, size: tuple[int, int], what: str) -> np.ndarray:
        if not data:
            raise InvalidInputError(f"{what} is empty (0 bytes); send encoded image bytes")
        try:
            return decode(data, size, max_pixels=self.config.max_image_pixels)
        except InvalidInputError as e:
            message = _BYTES_IO.sub("the bytes", str(e))
            message = message[len("image: "):] if message.startswith("image: ") else message
            raise InvalidInputError(f"{what}: {message}") from None

    def decode_all(self, images: Sequence[bytes], loaded: Loaded) -> list[np.ndarray]:
        if len(images) == 1:  # no hop through the pool for the common single image
            return [self.decode_one(images[0], loaded, "images[0]")]
        futures = [self.pool.submit(self.decode_one, data, loaded, f"images[{i}]")
                   for i, data in enumerate(images)]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def image_model(self, spec: common_pb2.ModelSpec, what: str) -> Resolved:
        resolved = self.store.resolve(spec.name, spec.version)
        if not resolved.is_image:
            hint = ("ClassifyText" if resolved.task == TEXT_CLASSIFICATION else "Embed")
            raise InvalidInputError(f"{resolved.describe()} is a {resolved.task} model; {what} "
                                    f"takes image models (use {hint})")
        return resolved

    def run_images(self, kind: str, resolved: Resolved, images: Sequence[bytes],
                   context: grpc.ServicerContext) -> tuple[Loaded, Any]:
        """Decode and prepare `images` (in this thread for one, in the pool for more) and run
        them through the model's batcher."""
        deadline = deadline_of(context)
        with self.manager.use(kind, resolved, deadline) as loaded:
            self.manager.begin_prepare(kind, resolved)
            try:
                inputs = self.decode_all(images, loaded)
            finally:
                self.manager.end_prepare(kind, resolved)
            future = loaded.batcher.submit(inputs, deadline, context.is_active)
            return loaded, wait_result(future, deadline)


class ModelService(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, store: ModelStore, manager: ModelManager):
        self.store, self.manager = store, manager

    def info(self, m: Resolved, labels: bool = False) -> models_pb2.ModelInfo:
        from zoo.hub.fetch import cached_path

        info = models_pb2.ModelInfo(name=m.name, version=m.version, task=TASKS.get(m.task, 0),
                                    loaded=self.manager.is_loaded(m.name, m.version))
        if m.origin == REGISTRY:
            spec = m.spec
            assert spec is not None
            info.origin = models_pb2.ModelInfo.REGISTRY
            info.family, info.params = spec.family, spec.params or 0
            info.input_size.extend(spec.input.size or ())
            info.max_length = spec.input.max_length or 0
            info.preprocessing = spec.input.preprocessing
            info.num_classes = spec.head.num_classes or 0
            if spec.provenance.top1 is not None:
                info.top1 = spec.provenance.top1
            if spec.provenance.top5 is not None:
                info.top5 = spec.provenance.top5
            info.license, info.description = spec.provenance.license, spec.description
            try:
                info.cached = cached_path(spec.name) is not None
            except ZooError:
                info.cached = False
            if labels and spec.is_image and spec.head.labels == "imagenet":
                try:
                    from zoo.vision.imagenet import imagenet_labels

                    info.labels.extend(label for _, label in imagenet_labels())
                except ZooError:
                    pass  # the class index cannot be fetched now; labels stay empty
            return info
        meta = m.meta or {}
        info.origin = models_pb2.ModelInfo.FINETUNED
        info.base = str(meta.get("base") or "")
        info.family = str(meta.get("base_family") or "")
        info.params = int(meta.get("params") or meta.get("base_params") or 0)
        inputs = meta.get("input") or {}
        info.input_size.extend(int(x) for x in inputs.get("size") or ())
        info.max_length = int(inputs.get("max_length") or 0)
        info.preprocessing = str(inputs.get("preprocessing") or "")
        info.num_classes = len(meta.get("labels") or [])
        if labels:
            info.labels.extend(str(x) for x in meta.get("labels") or [])
        info.license = "derived from " + (m.spec.provenance.license if m.spec else "its base")
        info.cached = True
        for key, value in (meta.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                info.metrics[key] = float(value)
        examples = (meta.get("data") or {}).get("train_examples")
        info.description = (f"fine-tuned from {info.base}"
                            + (f" on {examples} examples" if examples else "")
                            + (f", created {meta['created']}" if meta.get("created") else ""))
        return info

    def ListModels(self, request: models_pb2.ListModelsRequest, context: Any
                   ) -> models_pb2.ListModelsResponse:
        pattern = request.pattern.strip() or "*"
        if len(pattern) > 200 or not pattern.isprintable():
            raise InvalidInputError("pattern must be a printable shell-style pattern of at most "
                                    "200 characters")
        if request.task and request.task not in TASK_NAMES:
            raise InvalidInputError(f"unknown task {request.task}")
        task = TASK_NAMES.get(request.task)
        models = self.store.list(pattern, task)
        return models_pb2.ListModelsResponse(models=[self.info(m) for m in models])

    def GetModel(self, request: models_pb2.GetModelRequest, context: Any
                 ) -> models_pb2.GetModelResponse:
        resolved = self.store.resolve(request.model.name, request.model.version)
        return models_pb2.GetModelResponse(model=self.info(resolved, labels=True))

    def FetchModel(self, request: models_pb2.FetchModelRequest, context: grpc.ServicerContext
                   ) -> Iterator[models_pb2.FetchModelProgress]:
        resolved = self.store.resolve(request.model.name, request.model.version)
        if resolved.path is not None:
            yield models_pb2.FetchModelProgress(file="model.keras", done=True,
                                                path=str(resolved.path))
            return
        from zoo.hub.fetch import fetch_asset, fetch_weights

        spec = resolved.spec
        assert spec is not None
        progress: queue.Queue[Any] = queue.Queue()
        label = f"{spec.name} ({'no top' if request.no_top else 'weights'})"

        sizes = {"done": 0, "total": 0}

        def report(name: str) -> Any:
            last = [0.0]

            def callback(done: int, total: int | None) -> None:
                sizes.update(done=done, total=total or 0)
                now = time.monotonic()
                if now - last[0] >= 0.1 or (total and done >= total):
                    last[0] = now
                    progress.put(models_pb2.FetchModelProgress(
                        file=name, bytes_done=done, bytes_total=total or 0))

            return callback

        def work() -> None:
            try:
                path = fetch_weights(spec.name, include_top=not request.no_top,
                                     progress=report(label))
                size = path.stat().st_size if path.is_file() else sizes["done"]
                if spec.is_image and not request.no_top:
                    fetch_asset("imagenet_class_index", progress=report("imagenet_class_index"))
                progress.put(models_pb2.FetchModelProgress(
                    file=label, bytes_done=size, bytes_total=size, done=True, path=str(path)))
            except BaseException as e:
                progress.put(e)

        threading.Thread(target=work, name=f"fetch:{spec.name}", daemon=True).start()
        while True:
            try:
                item = progress.get(timeout=1.0)
            except queue.Empty:
                if not context.is_active():
                    return  # the download goes on in the background and lands in the cache
                continue
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.done:
                return

    def _kind(self, resolved: Resolved) -> str:
        if resolved.is_image:
            return CLASSIFY
        if resolved.task == TEXT_CLASSIFICATION and resolved.origin == FINETUNED:
            return TEXT_CLASSIFY
        return TEXT_EMBED

    def LoadModel(self, request: models_pb2.LoadModelRequest, context: grpc.ServicerContext
                  ) -> models_pb2.LoadModelResponse:
        resolved = self.store.resolve(request.model.name, request.model.version)
        kind = self._kind(resolved)
        was_loaded = self.manager.batcher(kind, resolved) is not None
        started = time.perf_counter()
        with self.manager.use(kind, resolved, deadline_of(context)):
            pass
        seconds = 0.0 if was_loaded else time.perf_counter() - started
        return models_pb2.LoadModelResponse(model=self.info(resolved), seconds=seconds)

    def UnloadModel(self, request: models_pb2.UnloadModelRequest, context: Any
                    ) -> models_pb2.UnloadModelResponse:
        resolved = self.store.resolve(request.model.name, request.model.version)
        return models_pb2.UnloadModelResponse(
            was_loaded=self.manager.unload(resolved.name, resolved.version))


class InferenceService(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, inference: Inference):
        self.inference = inference
        self.manager = inference.manager

    def Classify(self, request: inference_pb2.ClassifyRequest, context: grpc.ServicerContext
                 ) -> inference_pb2.ClassifyResponse:
        resolved = self.inference.image_model(request.model, "Classify")
        k = resolve_top_k(request.top_k, resolved.num_classes)
        if not request.images:
            raise InvalidInputError("images is empty: send a non-empty list of encoded images")
        loaded, probs = self.inference.run_images(CLASSIFY, resolved, request.images, context)
        labels = loaded.labels
        return inference_pb2.ClassifyResponse(
            model=spec_of(resolved),
            results=[common_pb2.Classification(predictions=top_predictions(row, labels, k))
                     for row in probs])

    def ClassifyStream(self, request_iterator: Iterator[inference_pb2.ClassifyStreamRequest],
                       context: grpc.ServicerContext
                       ) -> Iterator[inference_pb2.ClassifyStreamResponse]:
        """Requests are read on a thread and each goes decode -> batcher -> response through
        future callbacks, so one stream's requests batch with each other and with everyone
        else's; responses come back as they finish, each with its request_id."""
        out: queue.Queue[Any] = queue.Queue()
        window = threading.BoundedSemaphore(STREAM_WINDOW)
        state = {"pending": 0, "reading": True}
        lock = threading.Lock()
        end = object()

        def respond(response: inference_pb2.ClassifyStreamResponse) -> None:
            out.put(response)
            window.release()
            with lock:
                state["pending"] -= 1
                finished = not state["reading"] and state["pending"] == 0
            if finished:
                out.put(end)

        def fail(request_id: str, error: BaseException) -> None:
            code, message = status_for(error)
            respond(inference_pb2.ClassifyStreamResponse(
                request_id=request_id, error_code=code.name, error_message=message))

        def start(request: inference_pb2.ClassifyStreamRequest) -> None:
            rid = request.request_id
            try:
                resolved = self.inference.image_model(request.model, "ClassifyStream")
                k = resolve_top_k(request.top_k, resolved.num_classes)
                deadline = deadline_of(context)
                loaded = self.manager.acquire(CLASSIFY, resolved, deadline)
            except Exception as e:
                fail(rid, e)
                return
            self.manager.begin_prepare(CLASSIFY, resolved)
            decoding = self.inference.pool.submit(self.inference.decode_one, request.image,
                                                  loaded, "image")

            def decoded(f: Future[np.ndarray]) -> None:
                self.manager.end_prepare(CLASSIFY, resolved)
                try:
                    batch = loaded.batcher.submit([f.result()], deadline, context.is_active)
                except BaseException as e:
                    self.manager.release(loaded)
                    fail(rid, e)
                    return
                batch.add_done_callback(finished)

            def finished(f: Future[Any]) -> None:
                self.manager.release(loaded)
                try:
                    probs = f.result()
                    respond(inference_pb2.ClassifyStreamResponse(
                        request_id=rid, predictions=top_predictions(probs[0], loaded.labels, k)))
                except BaseException as e:
                    fail(rid, e)

            decoding.add_done_callback(decoded)

        def read() -> None:
            try:
                for request in request_iterator:
                    window.acquire()
                    with lock:
                        state["pending"] += 1
                    start(request)
            except Exception as e:  # a request that does not parse ends the stream
                out.put(e)
            finally:
                with lock:
                    state["reading"] = False
                    finished = state["pending"] == 0
                if finished:
                    out.put(end)

        threading.Thread(target=read, name="classify-stream-reader", daemon=True).start()
        while True:
            try:
                item = out.get(timeout=1.0)
            except queue.Empty:
                if not context.is_active():
                    return
                continue
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def ClassifyText(self, request: inference_pb2.ClassifyTextRequest,
                     context: grpc.ServicerContext) -> inference_pb2.ClassifyTextResponse:
        resolved = self.inference.store.resolve(request.model.name, request.model.version)
        if resolved.task != TEXT_CLASSIFICATION or resolved.origin != FINETUNED:
            hint = ("it is a text backbone: fine-tune a classifier from it with CreateJob"
                    if resolved.spec is not None and resolved.spec.is_text
                    and resolved.origin == REGISTRY else "use Classify for images, Embed for "
                    "embeddings")
            raise InvalidInputError(f"{resolved.describe()} is not a fine-tuned text classifier; "
                                    f"{hint}")
        k = resolve_top_k(request.top_k, resolved.num_classes)
        texts = check_texts(request.texts)
        deadline = deadline_of(context)
        with self.manager.use(TEXT_CLASSIFY, resolved, deadline) as loaded:
            rows = wait_result(loaded.batcher.submit(texts, deadline, context.is_active), deadline)
        return inference_pb2.ClassifyTextResponse(
            model=spec_of(resolved),
            results=[common_pb2.Classification(predictions=top_predictions(p, loaded.labels, k))
                     for p, _ in rows],
            truncated=sum(1 for _, cut in rows if cut))

    def Embed(self, request: inference_pb2.EmbedRequest, context: grpc.ServicerContext
              ) -> inference_pb2.EmbedResponse:
        if bool(request.texts) == bool(request.images):
            raise InvalidInputError("send either texts or images to embed (exactly one of them, "
                                    "non-empty)")
        resolved = self.inference.store.resolve(request.model.name, request.model.version)
        truncated = 0
        if request.texts:
            if resolved.is_image:
                raise InvalidInputError(f"{resolved.describe()} is an image model; send images "
                                        "to embed, or texts to a text model")
            if resolved.origin == FINETUNED:
                raise InvalidInputError(
                    f"{resolved.describe()} is a fine-tuned text classifier; embed texts with its "
                    f"base model {resolved.meta.get('base') if resolved.meta else ''}".rstrip())
            texts = check_texts(request.texts)
            deadline = deadline_of(context)
            with self.manager.use(TEXT_EMBED, resolved, deadline) as loaded:
                rows = wait_result(loaded.batcher.submit(texts, deadline, context.is_active),
                                   deadline)
            vectors = np.stack([v for v, _ in rows])
            truncated = sum(1 for _, cut in rows if cut)
        else:
            if not resolved.is_image:
                raise InvalidInputError(f"{resolved.describe()} is a text model; send texts to "
                                        "embed, or images to an image model")
            loaded, vectors = self.inference.run_images(IMAGE_EMBED, resolved, request.images,
                                                        context)
            vectors = np.asarray(vectors)
        if not request.no_normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return inference_pb2.EmbedResponse(
            model=spec_of(resolved), dimension=int(vectors.shape[1]), truncated=truncated,
            embeddings=[inference_pb2.Embedding(values=row.tolist()) for row in vectors])


# --- fine-tuning -----------------------------------------------------------------------------


def job_proto(job: dict[str, Any]) -> finetune_pb2.Job:
    hp = finetune_pb2.HyperParameters(**{k: v for k, v in job["hyperparameters"].items()
                                         if k in HYPERPARAMETERS})
    message = finetune_pb2.Job(
        id=job["id"], state=finetune_pb2.JobState.Value(job["state"]),
        base=common_pb2.ModelSpec(name=job["base"]), dataset_id=job["dataset_id"],
        output_name=job["output_name"], hyperparameters=hp, epoch=job["epoch"],
        epochs=job["epochs"], error=job["error"], created_ms=job["created_ms"],
        started_ms=job["started_ms"], finished_ms=job["finished_ms"], attempts=job["attempts"])
    if job["state"] == "SUCCEEDED":
        message.result.CopyFrom(common_pb2.ModelSpec(name=job["output_name"],
                                                     version=job["result_version"]))
    for key, value in job["metrics"].items():
        message.metrics[key] = float(value)
    return message


def event_proto(job_id: str, event: dict[str, Any]) -> finetune_pb2.JobEvent:
    message = finetune_pb2.JobEvent(
        job_id=job_id, kind=finetune_pb2.JobEvent.Kind.Value(event.get("kind", "LOG")),
        phase=int(event.get("phase", 0)), epoch=int(event.get("epoch", 0)),
        epochs=int(event.get("epochs", 0)), step=int(event.get("step", 0)),
        steps=int(event.get("steps", 0) or 0), loss=float(event.get("loss", 0.0)),
        message=str(event.get("message", "")), time_ms=int(event.get("time_ms", 0)))
    if event.get("state"):
        message.state = finetune_pb2.JobState.Value(event["state"])
    for key, value in (event.get("metrics") or {}).items():
        message.metrics[key] = float(value)
    return message


class FineTuneService(finetune_pb2_grpc.FineTuneServiceServicer):
    def __init__(self, datasets: DatasetStore, jobs: JobManager, metrics: Metrics | None):
        self.datasets, self.jobs, self.metrics = datasets, jobs, metrics

    def UploadDataset(self, request_iterator: Iterator[finetune_pb2.UploadDatasetRequest],
                      context: grpc.ServicerContext) -> finetune_pb2.UploadDatasetResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInputError("the first UploadDatasetRequest must carry the header "
                                    "(format, sha256, size)")
        h = first.header
        header = Header(name=h.name, format=finetune_pb2.DatasetFormat.Name(h.format)
                        if h.format in finetune_pb2.DatasetFormat.values() else str(h.format),
                        sha256=h.sha256.lower(), size=h.size)

        def chunks() -> Iterator[bytes]:
            for request in request_iterator:
                if request.WhichOneof("part") != "chunk":
                    raise InvalidInputError("only the first message may carry a header; the rest "
                                            "carry chunks")
                yield request.chunk

        on_bytes = self.metrics.upload_bytes.inc if self.metrics is not None else None
        row = self.datasets.upload(header, chunks(), on_bytes)
        return finetune_pb2.UploadDatasetResponse(dataset_id=row["id"], size=row["size"],
                                                  examples=row["examples"],
                                                  classes=row["classes"])

    def CreateJob(self, request: finetune_pb2.CreateJobRequest, context: Any) -> finetune_pb2.Job:
        hp = {name: getattr(request.hyperparameters, name) for name in HYPERPARAMETERS
              if request.hyperparameters.HasField(name)}
        if not request.output_name:
            raise InvalidInputError("output_name is empty: name the fine-tuned model")
        job = self.jobs.create(request.base.name, request.dataset_id, hp, request.output_name)
        return job_proto(job)

    def GetJob(self, request: finetune_pb2.GetJobRequest, context: Any) -> finetune_pb2.Job:
        return job_proto(self.jobs.get(request.job_id))

    def ListJobs(self, request: finetune_pb2.ListJobsRequest, context: Any
                 ) -> finetune_pb2.ListJobsResponse:
        if request.limit < 0:
            raise InvalidInputError(f"limit must be 0 (100) or positive, got {request.limit}")
        state = finetune_pb2.JobState.Name(request.state) if request.state else None
        jobs = self.jobs.list(state, min(request.limit or 100, 1000))
        return finetune_pb2.ListJobsResponse(jobs=[job_proto(j) for j in jobs])

    def CancelJob(self, request: finetune_pb2.CancelJobRequest, context: grpc.ServicerContext
                  ) -> finetune_pb2.Job:
        remaining = context.time_remaining()
        wait = 10.0 if remaining is None else max(0.0, min(10.0, remaining - 0.5))
        return job_proto(self.jobs.cancel(request.job_id, wait))

    def WatchJob(self, request: finetune_pb2.WatchJobRequest, context: grpc.ServicerContext
                 ) -> Iterator[finetune_pb2.JobEvent]:
        for event in self.jobs.watch(request.job_id, context.is_active):
            yield event_proto(request.job_id, event)


__all__ = ["TERMINAL", "FineTuneService", "Inference", "InferenceService", "ModelService"]
