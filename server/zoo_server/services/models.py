"""zoo.v1 ModelService: what exists, what is cached, what is loaded; fetch, load, unload."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from zoo import model_dir
from zoo.errors import InvalidInputError, ZooError
from zoo.hub.spec import IMAGE_CLASSIFICATION, TEXT_CLASSIFICATION, TEXT_EMBEDDING
from zoo_api.v1 import common_pb2, models_pb2, models_pb2_grpc
from zoo_server.errors import IdleStreamError
from zoo_server.loaders import kind_for
from zoo_server.manager import ModelManager
from zoo_server.paths import public_path
from zoo_server.services import deadline_of
from zoo_server.store import REGISTRY, ModelStore, Resolved

TASKS = {
    IMAGE_CLASSIFICATION: common_pb2.IMAGE_CLASSIFICATION,
    TEXT_EMBEDDING: common_pb2.TEXT_EMBEDDING,
    TEXT_CLASSIFICATION: common_pb2.TEXT_CLASSIFICATION,
}
TASK_NAMES = {v: k for k, v in TASKS.items()}


class ModelService(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, store: ModelStore, manager: ModelManager, idle_s: float | None = None):
        self.store, self.manager = store, manager
        self.idle_s = idle_s  # FetchModel ends after this long without progress

    def info(self, m: Resolved, detail: bool = False) -> models_pb2.ModelInfo:
        """What ListModels says of a model; with `detail` (GetModel) also its labels, weight
        files and (fine-tuned) confusion matrix."""
        builds = self.manager.builds_of(m.name, m.version)
        info = models_pb2.ModelInfo(name=m.name, version=m.version, task=TASKS.get(m.task, 0),
                                    loaded=bool(builds))
        report = next((b.runtime for b in builds if b.runtime is not None), None)
        if report is not None:  # an image model: which runtime runs it, and why
            info.runtime, info.runtime_reason = report.runtime, report.reason
            info.runtime_report_json = json.dumps(report.to_dict(), sort_keys=True)
        replicated = [b.replicas for b in builds if b.replicas is not None]
        if replicated:  # served by replicas on a Ray cluster
            loads = [load for replicas in replicated for load in replicas()]
            info.replicas = len(loads)
            info.replica_loads.extend(
                models_pb2.ReplicaLoad(replica=r.replica, node=r.node, requests=r.requests,
                                       inputs=r.inputs, batches=r.batches, queued=r.queued,
                                       in_flight=r.in_flight) for r in loads)
        if m.origin == REGISTRY:
            self._registry_info(info, m, detail)
        else:
            self._finetuned_info(info, m, detail)
        return info

    def _registry_info(self, info: models_pb2.ModelInfo, m: Resolved, detail: bool) -> None:
        from zoo.hub.fetch import weight_files
        from zoo.hub.manifest import load_manifest

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
            info.source = load_manifest().model(spec.name).source
            files = weight_files(spec)
        except ZooError:
            files = []
        # What the server loads: a Keras model's classifier file, a Hub model's snapshot.
        served = [f for f in files if f.key != "notop"]
        info.cached = bool(served) and all(f.cached for f in served)
        info.size_bytes = sum(f.size or 0 for f in served)
        if not detail:
            return
        info.files.extend(models_pb2.WeightFile(
            name=f.key, filename=f.filename, origin=f.origin, size=f.size or 0,
            checksum=f.checksum or "", checksum_recorded=f.recorded, cached=f.cached)
            for f in files)
        if spec.is_image and spec.head.labels == "imagenet":
            try:
                from zoo.vision.imagenet import imagenet_labels

                info.labels.extend(label for _, label in imagenet_labels())
            except ZooError:
                pass  # the class index cannot be fetched now; labels stay empty

    def _finetuned_info(self, info: models_pb2.ModelInfo, m: Resolved, detail: bool) -> None:
        meta = m.meta or {}
        info.origin = models_pb2.ModelInfo.FINETUNED
        info.source = "finetuned"
        info.base = str(meta.get("base") or "")
        info.family = str(meta.get("base_family") or "")
        info.params = int(meta.get("params") or meta.get("base_params") or 0)
        inputs = meta.get("input") or {}
        if m.is_image:  # a text head's zoo.json "size" is its embedding's, not an image's
            info.input_size.extend(int(x) for x in inputs.get("size") or ())
        info.max_length = int(inputs.get("max_length") or 0)
        info.preprocessing = str(inputs.get("preprocessing") or "")
        info.num_classes = len(meta.get("labels") or [])
        info.license = "derived from " + (m.spec.provenance.license if m.spec else "its base")
        info.cached = True
        for key, value in (meta.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                info.metrics[key] = float(value)
        examples = (meta.get("data") or {}).get("train_examples")
        info.description = (f"fine-tuned from {info.base}"
                            + (f" on {examples} examples" if examples else "")
                            + (f", created {meta['created']}" if meta.get("created") else ""))
        assert m.path is not None
        try:
            info.size_bytes = (m.path / model_dir.MODEL_FILE).stat().st_size
        except OSError:
            pass
        if not detail:
            return
        info.labels.extend(str(x) for x in meta.get("labels") or [])
        info.files.append(models_pb2.WeightFile(
            name=model_dir.MODEL_FILE, filename=model_dir.MODEL_FILE, size=info.size_bytes,
            cached=True))
        report = model_dir.read_metrics(m.path) or {}
        matrix = report.get("confusion_matrix")
        if isinstance(matrix, list) and len(matrix) == info.num_classes:
            info.confusion_matrix.extend(
                models_pb2.ConfusionRow(counts=[int(c) for c in row]) for row in matrix)

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
        return models_pb2.GetModelResponse(model=self.info(resolved, detail=True))

    def FetchModel(self, request: models_pb2.FetchModelRequest, context: grpc.ServicerContext
                   ) -> Iterator[models_pb2.FetchModelProgress]:
        resolved = self.store.resolve(request.model.name, request.model.version)
        if resolved.path is not None:
            yield models_pb2.FetchModelProgress(file="model.keras", done=True,
                                                path=public_path(resolved.path, self.store.home))
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
                    file=label, bytes_done=size, bytes_total=size, done=True,
                    path=public_path(path, self.store.home)))
            except BaseException as e:
                progress.put(e)

        threading.Thread(target=work, name=f"fetch:{spec.name}", daemon=True).start()
        last = time.monotonic()
        while True:
            try:
                item = progress.get(timeout=1.0)
            except queue.Empty:
                if not context.is_active():
                    return  # the download goes on in the background and lands in the cache
                if self.idle_s is not None and time.monotonic() - last >= self.idle_s:
                    raise IdleStreamError(
                        f"FetchModel: no progress for {self.idle_s:g} s (the server's "
                        "--stream-idle); the download goes on in the background: call "
                        "FetchModel again to follow it") from None
                continue
            last = time.monotonic()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.done:
                return

    def LoadModel(self, request: models_pb2.LoadModelRequest, context: grpc.ServicerContext
                  ) -> models_pb2.LoadModelResponse:
        resolved = self.store.resolve(request.model.name, request.model.version)
        kind = kind_for(resolved)
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
