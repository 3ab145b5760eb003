"""Loaded models: an LRU bounded by a memory budget, one batcher per model.

A model is loaded on first use (or `--preload`) by a loader thread, warmed up with one
call (so tracing never lands on a client's request), and then served through its
`Batcher`. Requests for a model that is still loading wait for it, up to their deadline
or `load_wait_s`, then get UNAVAILABLE. Before a load, the manager makes room: idle
models (no request in flight) are evicted least recently used first; if the model still
does not fit, the request gets RESOURCE_EXHAUSTED. A model's size is estimated from its
parameter count (x 4 bytes, float32 weights) before loading and measured after.

Kinds of loaded model, each with its own batcher:
    classify       image classifier (registry model with its ImageNet head, or fine-tuned)
    image-embed    pooled features of an image model (include_top=False / the fine-tune's base)
    text-embed     a text model's sentence embeddings (zoo.text.encoder encoder)
    text-classify  a fine-tuned text classifier (a head on the shared text-embed encoder, or
                   an end-to-end model with its own fine-tuned backbone)
"""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo_server.batching import Batcher, Run
from zoo_server.config import ServerConfig
from zoo_server.errors import MemoryBudgetError, ModelLoadingError, ShuttingDownError
from zoo_server.logs import log_event
from zoo_server.store import Resolved

CLASSIFY = "classify"
IMAGE_EMBED = "image-embed"
TEXT_EMBED = "text-embed"
TEXT_CLASSIFY = "text-classify"
KINDS = (CLASSIFY, IMAGE_EMBED, TEXT_EMBED, TEXT_CLASSIFY)

Key = tuple[str, str, int]  # (kind, name, version)


@dataclass(eq=False)
class Loaded:
    key: Key
    resolved: Resolved
    kind: str
    batcher: Batcher
    memory: int  # bytes, estimated from the weights
    seconds: float  # load time
    model: Any  # ImageClassifier, TextEncoder, feature model, text classifier
    size: tuple[int, int] | None = None  # images: (height, width)
    labels: list[str] = field(default_factory=list)
    dim: int = 0  # embeddings
    prepare: Callable[[np.ndarray], np.ndarray] | None = None  # images: uint8 -> model input
    inflight: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.batcher.name


def weights_bytes(model: Any) -> int:
    total = 0
    for w in getattr(model, "weights", []):
        total += int(np.prod(w.shape)) * np.dtype(getattr(w, "dtype", "float32")).itemsize
    return total


def _shares_encoder(resolved: Resolved, kind: str) -> bool:
    """A text classifier whose model.keras is a head on its base's shared encoder (not an
    end-to-end model that holds its own fine-tuned backbone)."""
    from zoo.model_dir import takes_tokens

    return kind == TEXT_CLASSIFY and not takes_tokens(resolved.meta)


def estimate_bytes(resolved: Resolved, kind: str) -> int:
    """Bytes the model's weights will take, before loading it: the saved model's size for a
    fine-tune (plus its base encoder for a text classifier whose file holds the head only),
    parameters x 4 for a registry model."""
    params = resolved.spec.params if resolved.spec is not None else None
    if resolved.path is not None:
        try:
            size = (resolved.path / "model.keras").stat().st_size
        except OSError:
            size = 0
        return size + (int(params or 0) * 4 if _shares_encoder(resolved, kind) else 0)
    return int(params or 25_000_000) * 4


def encoder_base(loaded: Loaded) -> str | None:
    """The registry text model whose encoder (cached by zoo.text.encoder) this model uses."""
    if loaded.kind == TEXT_EMBED and loaded.resolved.spec is not None:
        return loaded.resolved.spec.name
    if _shares_encoder(loaded.resolved, loaded.kind) and loaded.resolved.meta is not None:
        return str(loaded.resolved.meta.get("base"))
    return None


def _features_model(model: Any) -> Any:
    """A fine-tuned image model cut before its head: pixels -> the base's pooled features."""
    import keras

    try:
        head = model.get_layer("head")
        return keras.Model(model.input, head.input)
    except (ValueError, AttributeError):
        return keras.Model(model.input, model.layers[-2].output)


class ModelManager:
    def __init__(self, config: ServerConfig, metrics: Any = None):
        self.config = config
        self.metrics = metrics
        self._models: OrderedDict[Key, Loaded] = OrderedDict()  # least recently used first
        self._loading: dict[Key, tuple[Future[Loaded], float, int]] = {}  # future, start, bytes
        self._pending: Counter[Key] = Counter()  # requests preparing inputs (decoding)
        self._lock = threading.Lock()
        self._loader = ThreadPoolExecutor(2, thread_name_prefix="model-loader")
        self._closed = False

    # --- what is loaded ------------------------------------------------------------------------

    def loaded_keys(self) -> list[Key]:
        with self._lock:
            return list(self._models)

    def is_loaded(self, name: str, version: int) -> bool:
        with self._lock:
            return any(k[1] == name and k[2] == version for k in self._models)

    def memory_used(self) -> int:
        with self._lock:
            return sum(m.memory for m in self._models.values())

    def batcher(self, kind: str, resolved: Resolved) -> Batcher | None:
        with self._lock:
            loaded = self._models.get((kind, resolved.name, resolved.version))
            return loaded.batcher if loaded else None

    # --- using a model -------------------------------------------------------------------------

    def begin_prepare(self, kind: str, resolved: Resolved) -> None:
        """Count a request that is decoding inputs for this model: its batcher then waits
        for it (up to max_queue_delay) rather than run a smaller batch without it."""
        with self._lock:
            self._pending[(kind, resolved.name, resolved.version)] += 1

    def end_prepare(self, kind: str, resolved: Resolved) -> None:
        key = (kind, resolved.name, resolved.version)
        with self._lock:
            self._pending[key] -= 1
            if self._pending[key] <= 0:
                del self._pending[key]
            loaded = self._models.get(key)
        if loaded is not None:
            loaded.batcher.wake()

    @contextmanager
    def use(self, kind: str, resolved: Resolved, deadline: float | None = None
            ) -> Iterator[Loaded]:
        """The loaded model (loading it first if needed), held in use for the block."""
        loaded = self.acquire(kind, resolved, deadline)
        try:
            yield loaded
        finally:
            self.release(loaded)

    def release(self, loaded: Loaded) -> None:
        with self._lock:
            loaded.inflight -= 1
            loaded.last_used = time.monotonic()

    def acquire(self, kind: str, resolved: Resolved, deadline: float | None = None) -> Loaded:
        key = (kind, resolved.name, resolved.version)
        while True:
            with self._lock:
                if self._closed:
                    raise ShuttingDownError("the server is shutting down")
                loaded = self._models.get(key)
                if loaded is not None:
                    self._models.move_to_end(key)
                    loaded.inflight += 1
                    return loaded
                if key in self._loading:
                    future, started, _ = self._loading[key]
                else:
                    need = estimate_bytes(resolved, kind)
                    self._make_room(need, resolved)
                    started = time.monotonic()
                    future = self._loader.submit(self._load, key, kind, resolved)
                    self._loading[key] = (future, started, need)
            wait = self.config.load_wait_s
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            try:
                future.result(timeout=wait)
            except FutureTimeout:
                raise ModelLoadingError(
                    f"{resolved.describe()} is still loading ({time.monotonic() - started:.0f} s "
                    "so far); retry shortly"
                ) from None
            # Loop: take it from the table (it may have been evicted in between).

    def _make_room(self, need: int, resolved: Resolved) -> None:
        """Evict idle models, least recently used first, until `need` bytes fit (holding
        the lock)."""
        budget = self.config.memory_budget_bytes
        if need > budget:
            raise MemoryBudgetError(
                f"{resolved.describe()} needs about {need / 2**20:.0f} MiB, more than the whole "
                f"memory budget ({budget / 2**20:.0f} MiB); raise --memory-budget-mb"
            )

        def used() -> int:
            return (sum(m.memory for m in self._models.values())
                    + sum(n for _, _, n in self._loading.values()))

        for key in list(self._models):
            if used() + need <= budget:
                return
            if self._models[key].inflight == 0:
                self._evict(key, "memory budget")
        if used() + need > budget:
            busy = ", ".join(sorted({m.name for m in self._models.values()})) or "models loading"
            raise MemoryBudgetError(
                f"{resolved.describe()} needs about {need / 2**20:.0f} MiB and the memory budget "
                f"({budget / 2**20:.0f} MiB) is held by models in use ({busy}); retry, unload "
                "a model or raise --memory-budget-mb"
            )

    def _evict(self, key: Key, why: str) -> None:
        loaded = self._models.pop(key)
        loaded.batcher.close(wait=False)
        base = encoder_base(loaded)
        if base is not None and all(encoder_base(m) != base for m in self._models.values()):
            from zoo.text.encoder import unload_encoder

            unload_encoder(base)  # no loaded model uses that encoder any more
        log_event("model_unloaded", model=loaded.name, kind=loaded.kind, reason=why)
        self._gauges()

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.models_loaded.set(len(self._models))
            self.metrics.model_memory.set(sum(m.memory for m in self._models.values()))

    def unload(self, name: str, version: int) -> bool:
        with self._lock:
            keys = [k for k in self._models if k[1] == name and k[2] == version]
            for key in keys:
                self._evict(key, "UnloadModel")
        gc.collect()
        return bool(keys)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loaded = list(self._models.values())
            self._models.clear()
        for model in loaded:
            model.batcher.close(wait=True)
        self._loader.shutdown(wait=False, cancel_futures=True)

    # --- loading -------------------------------------------------------------------------------

    def _load(self, key: Key, kind: str, resolved: Resolved) -> Loaded:
        started = time.perf_counter()
        try:
            log_event("model_loading", model=resolved.describe(), kind=kind)
            loaded = self._build(key, kind, resolved, started)
        except BaseException as e:
            with self._lock:
                self._loading.pop(key, None)
            log_event("model_load_failed", model=resolved.describe(), kind=kind,
                      error=f"{type(e).__name__}: {e}")
            raise
        with self._lock:
            self._loading.pop(key, None)
            self._models[key] = loaded
            self._gauges()
        log_event("model_loaded", model=resolved.describe(), kind=kind,
                  seconds=round(loaded.seconds, 3), memory_mb=round(loaded.memory / 2**20, 1))
        return loaded

    def _batcher(self, key: Key, resolved: Resolved, kind: str, run: Run) -> Batcher:
        label = resolved.describe() if kind == CLASSIFY else f"{resolved.describe()} ({kind})"
        return Batcher(label, run, max_batch=self.config.max_batch_size,
                       max_delay_s=self.config.max_queue_delay_ms / 1000,
                       max_queue=self.config.max_queue, threads=self.config.batch_threads,
                       expected=lambda: self._pending.get(key, 0), metrics=self.metrics)

    def _build(self, key: Key, kind: str, resolved: Resolved, started: float) -> Loaded:
        from zoo.quiet import import_tensorflow

        import_tensorflow()
        if kind == CLASSIFY:
            return self._build_classifier(key, resolved, started)
        if kind == IMAGE_EMBED:
            return self._build_image_features(key, resolved, started)
        if kind == TEXT_EMBED:
            return self._build_text_encoder(key, resolved, started)
        if kind == TEXT_CLASSIFY:
            return self._build_text_classifier(key, resolved, started)
        raise ValueError(f"unknown kind {kind!r}")

    def _build_classifier(self, key: Key, resolved: Resolved, started: float) -> Loaded:
        from zoo.vision.classifier import ImageClassifier

        if not resolved.is_image:
            raise InvalidInputError(
                f"{resolved.describe()} is a {resolved.task} model; Classify takes image models")
        clf = ImageClassifier.load(resolved.path if resolved.path is not None else resolved.name)

        def run(inputs: list[np.ndarray]) -> np.ndarray:  # prepared in the decoding threads
            return clf.run(np.stack(inputs))

        run([clf.prepare(np.zeros((*clf.size, 3), np.uint8))])  # trace now, not on a request
        return Loaded(key, resolved, CLASSIFY, self._batcher(key, resolved, CLASSIFY, run),
                      weights_bytes(clf.model), time.perf_counter() - started, clf,
                      size=tuple(clf.size), labels=clf.labels,  # type: ignore[arg-type]
                      prepare=clf.prepare)

    def _build_image_features(self, key: Key, resolved: Resolved, started: float) -> Loaded:
        from zoo import model_dir
        from zoo.vision.build import load_model
        from zoo.vision.imagenet import preprocess
        from zoo.vision.inference import compiled_image_call, inference_model

        if not resolved.is_image:
            raise InvalidInputError(f"{resolved.describe()} is a {resolved.task} model, not an "
                                    "image model; send texts to embed")
        size = resolved.image_size
        assert size is not None
        mode: str | None
        if resolved.path is not None:
            model = _features_model(model_dir.load(resolved.path))
            mode = None  # fine-tuned models take raw pixels; scaling is inside
        else:
            assert resolved.spec is not None
            model = load_model(resolved.spec.name, include_top=False)
            mode = resolved.spec.input.preprocessing
        model = inference_model(model)  # BatchNorm folded into the convolutions
        call = compiled_image_call(model, size)

        def prepare(pixels: np.ndarray) -> np.ndarray:
            x = np.asarray(pixels, dtype=np.float32)
            return preprocess(x, mode) if mode else x

        def run(inputs: list[np.ndarray]) -> np.ndarray:
            return np.asarray(call(np.stack(inputs)))

        dim = int(run([prepare(np.zeros((*size, 3), np.uint8))]).shape[-1])
        return Loaded(key, resolved, IMAGE_EMBED, self._batcher(key, resolved, IMAGE_EMBED, run),
                      weights_bytes(model), time.perf_counter() - started, model, size=size,
                      dim=dim, prepare=prepare)

    def _build_text_encoder(self, key: Key, resolved: Resolved, started: float) -> Loaded:
        from zoo.text.encoder import load_encoder

        if resolved.path is not None or resolved.spec is None or not resolved.spec.is_text:
            raise InvalidInputError(
                f"{resolved.describe()} is not a registered text model; embed texts with one of "
                "`zoo list --task text-embedding` (or a text backbone)")
        encoder = load_encoder(resolved.spec.name)

        def run(texts: list[str]) -> list[tuple[np.ndarray, bool]]:
            result = encoder.encode(texts, normalize=False)
            cut = set(result.truncated)
            return [(result.vectors[i], i in cut) for i in range(len(texts))]

        run(["warm up"])
        return Loaded(key, resolved, TEXT_EMBED, self._batcher(key, resolved, TEXT_EMBED, run),
                      weights_bytes(encoder.backbone), time.perf_counter() - started, encoder,
                      dim=encoder.dim)

    def _build_text_classifier(self, key: Key, resolved: Resolved, started: float) -> Loaded:
        if resolved.task != "text-classification" or resolved.path is None:
            raise InvalidInputError(
                f"{resolved.describe()} is not a fine-tuned text classifier"
                + (" (registry text models are backbones: fine-tune one with CreateJob)"
                   if resolved.spec is not None and resolved.spec.is_text
                   and resolved.path is None else ""))
        from zoo.text.classifier import TextClassifier

        clf = TextClassifier.load(resolved.path)

        def run(texts: list[str]) -> list[tuple[np.ndarray, bool]]:
            probs, truncated = clf.probabilities(texts)
            cut = set(truncated)
            return [(probs[i], i in cut) for i in range(len(texts))]

        run(["warm up"])
        # An end-to-end classifier's model holds its backbone; a head uses the shared encoder.
        memory = weights_bytes(clf.model) + (
            0 if clf.takes_tokens else weights_bytes(clf.encoder.backbone))
        return Loaded(key, resolved, TEXT_CLASSIFY,
                      self._batcher(key, resolved, TEXT_CLASSIFY, run), memory,
                      time.perf_counter() - started, clf, labels=list(clf.labels))
