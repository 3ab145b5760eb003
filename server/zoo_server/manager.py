"""Loaded models: an LRU bounded by a memory budget, one batcher per model.

A model is loaded on first use (or `--preload`) by a loader thread, through the loader of
its kind (zoo_server.loaders), and then served through its `Batcher`. Requests for a model
that is still loading wait for it, up to their deadline or `load_wait_s`, then get
UNAVAILABLE. Before a load, the manager makes room: idle models (no request in flight) are
evicted least recently used first; if the model still does not fit, the request gets
RESOURCE_EXHAUSTED. A model's size is the loader's estimate before loading and measured
after.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo_server.batching import Batcher
from zoo_server.config import ServerConfig
from zoo_server.errors import MemoryBudgetError, ModelLoadingError, ShuttingDownError
from zoo_server.loaders import CLASSIFY, Built, Loader, build
from zoo_server.loaders import loaders as make_loaders
from zoo_server.logs import log_event
from zoo_server.store import Resolved

Key = tuple[str, str, int]  # (kind, name, version)


@dataclass(eq=False)
class Loaded:
    key: Key
    resolved: Resolved
    kind: str
    batcher: Batcher
    built: Built
    inflight: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.batcher.name

    @property
    def memory(self) -> int:
        return self.built.memory

    @property
    def seconds(self) -> float:
        return self.built.seconds

    @property
    def model(self) -> Any:
        return self.built.model

    @property
    def size(self) -> tuple[int, int] | None:
        return self.built.size

    @property
    def labels(self) -> list[str]:
        return self.built.labels

    @property
    def dim(self) -> int:
        return self.built.dim

    @property
    def prepare(self) -> Callable[[np.ndarray], np.ndarray] | None:
        return self.built.prepare


class ModelManager:
    def __init__(self, config: ServerConfig, metrics: Any = None,
                 loaders: Mapping[str, Loader] | None = None):
        self.config = config
        self.metrics = metrics
        self.loaders = dict(make_loaders(config.runtime_for) if loaders is None else loaders)
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

    def builds_of(self, name: str, version: int) -> list[Built]:
        """What each loaded kind of a model (classifier, features, ...) was built as."""
        with self._lock:
            return [m.built for k, m in self._models.items() if k[1:] == (name, version)]

    def is_loaded(self, name: str, version: int) -> bool:
        return bool(self.builds_of(name, version))

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
                    loader = self._loader_of(kind)
                    loader.check(resolved)  # before anything is evicted to make room
                    need = loader.estimate_bytes(resolved)
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

    def _loader_of(self, kind: str) -> Loader:
        try:
            return self.loaders[kind]
        except KeyError:
            raise ValueError(f"unknown kind {kind!r}") from None

    def _evict(self, key: Key, why: str) -> None:
        loaded = self._models.pop(key)
        loaded.batcher.close(wait=False)
        self._loader_of(loaded.kind).release(
            loaded.resolved, (self._loader_of(m.kind).shared_encoder(m.resolved)
                              for m in self._models.values()))
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
        try:
            log_event("model_loading", model=resolved.describe(), kind=kind)
            built = build(self._loader_of(kind), resolved)
            loaded = Loaded(key, resolved, kind, self._batcher(key, resolved, kind, built),
                            built)
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

    def _batcher(self, key: Key, resolved: Resolved, kind: str, built: Built) -> Batcher:
        label = resolved.describe() if kind == CLASSIFY else f"{resolved.describe()} ({kind})"
        return Batcher(label, built.run, max_batch=self.config.max_batch_size,
                       max_delay_s=self.config.max_queue_delay_ms / 1000,
                       max_queue=self.config.max_queue,
                       threads=built.batch_threads or self.config.batch_threads,
                       expected=lambda: self._pending.get(key, 0), metrics=self.metrics)
