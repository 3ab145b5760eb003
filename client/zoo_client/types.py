"""Results as frozen dataclasses: what callers get back, never raw protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo_api.v1 import common_pb2, finetune_pb2, models_pb2

TASKS = {
    common_pb2.IMAGE_CLASSIFICATION: "image-classification",
    common_pb2.TEXT_EMBEDDING: "text-embedding",
    common_pb2.TEXT_CLASSIFICATION: "text-classification",
}
TASK_VALUES = {name: value for value, name in TASKS.items()}
JOB_STATES = {
    finetune_pb2.QUEUED: "queued",
    finetune_pb2.RUNNING: "running",
    finetune_pb2.SUCCEEDED: "succeeded",
    finetune_pb2.FAILED: "failed",
    finetune_pb2.CANCELLED: "cancelled",
}
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
EVENT_KINDS = {
    finetune_pb2.JobEvent.STATE: "state",
    finetune_pb2.JobEvent.PHASE: "phase",
    finetune_pb2.JobEvent.EPOCH: "epoch",
    finetune_pb2.JobEvent.STEP: "step",
    finetune_pb2.JobEvent.LOG: "log",
}


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    index: int


@dataclass(frozen=True)
class WeightFile:
    """One weight file of a model (GetModel): where it comes from, its checksum, and
    whether the server's cache holds it."""

    name: str
    filename: str
    origin: str
    size: int  # 0 when unknown
    checksum: str  # "sha256:<hex>" / "md5:<hex>"; empty when none is known
    checksum_recorded: bool  # not pinned by the origin: recorded at the first download
    cached: bool


@dataclass(frozen=True)
class ModelInfo:
    name: str
    task: str
    origin: str  # "registry" or "finetuned"
    version: int = 0
    family: str = ""
    base: str = ""
    params: int = 0
    input_size: tuple[int, ...] = ()
    max_length: int = 0
    preprocessing: str = ""
    num_classes: int = 0
    labels: tuple[str, ...] = ()
    top1: float | None = None
    top5: float | None = None
    license: str = ""
    cached: bool = False
    loaded: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    description: str = ""
    runtime: str = ""  # loaded image models: "tf", "openvino", ... or "auto"
    runtime_reason: str = ""  # why: the measurement and parity figures that decided it
    source: str = ""  # "keras", "huggingface" or "finetuned"
    size_bytes: int = 0  # the weights: on disk when cached, else as pinned; 0 unknown
    files: tuple[WeightFile, ...] = ()  # get_model only
    confusion_matrix: tuple[tuple[int, ...], ...] = ()  # get_model, fine-tuned: rows true
    replicas: int = 0  # zoo serve --ray: replicas serving it now
    replica_loads: tuple[ReplicaLoad, ...] = ()


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica of a model a `zoo serve --ray` server runs on its Ray cluster."""

    replica: str
    node: str
    requests: int
    inputs: int
    batches: int
    queued: int
    in_flight: int


@dataclass(frozen=True)
class FetchProgress:
    file: str
    bytes_done: int
    bytes_total: int | None
    done: bool
    path: str | None


@dataclass(frozen=True)
class Dataset:
    id: str
    size: int
    examples: int
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    base: str
    dataset_id: str
    output_name: str
    result: str | None  # "name" of the served model, with result_version
    result_version: int
    epoch: int
    epochs: int
    metrics: dict[str, float]
    error: str
    created_ms: int
    started_ms: int
    finished_ms: int
    attempts: int
    hyperparameters: dict[str, Any]  # the ones the job was created with; unset ones: defaults

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    kind: str
    state: str
    phase: int
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    metrics: dict[str, float]
    message: str
    time_ms: int
    seq: int = 0  # increases with each event of the job; WatchJob resumes after it


def model_info(m: models_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=m.name, version=m.version, task=TASKS.get(m.task, "unknown"),
        origin="finetuned" if m.origin == models_pb2.ModelInfo.FINETUNED else "registry",
        family=m.family, base=m.base, params=m.params, input_size=tuple(m.input_size),
        max_length=m.max_length, preprocessing=m.preprocessing, num_classes=m.num_classes,
        labels=tuple(m.labels), top1=m.top1 if m.HasField("top1") else None,
        top5=m.top5 if m.HasField("top5") else None, license=m.license, cached=m.cached,
        loaded=m.loaded, metrics=dict(m.metrics), description=m.description,
        runtime=m.runtime, runtime_reason=m.runtime_reason,
        source=m.source, size_bytes=m.size_bytes,
        files=tuple(WeightFile(f.name, f.filename, f.origin, f.size, f.checksum,
                               f.checksum_recorded, f.cached) for f in m.files),
        confusion_matrix=tuple(tuple(row.counts) for row in m.confusion_matrix),
        replicas=m.replicas,
        replica_loads=tuple(ReplicaLoad(r.replica, r.node, r.requests, r.inputs, r.batches,
                                        r.queued, r.in_flight) for r in m.replica_loads),
    )


def predictions(c: common_pb2.Classification) -> list[Prediction]:
    return [Prediction(p.label, p.score, p.index) for p in c.predictions]


def job(j: finetune_pb2.Job) -> Job:
    return Job(
        id=j.id, state=JOB_STATES.get(j.state, "unknown"), base=j.base.name,
        dataset_id=j.dataset_id, output_name=j.output_name,
        result=j.result.name or None, result_version=j.result.version, epoch=j.epoch,
        epochs=j.epochs, metrics=dict(j.metrics), error=j.error, created_ms=j.created_ms,
        started_ms=j.started_ms, finished_ms=j.finished_ms, attempts=j.attempts,
        hyperparameters={f.name: v for f, v in j.hyperparameters.ListFields()},
    )


def job_event(e: finetune_pb2.JobEvent) -> JobEvent:
    return JobEvent(
        job_id=e.job_id, kind=EVENT_KINDS.get(e.kind, "unknown"),
        state=JOB_STATES.get(e.state, "unknown"), phase=e.phase, epoch=e.epoch, epochs=e.epochs,
        step=e.step, steps=e.steps, loss=e.loss, metrics=dict(e.metrics), message=e.message,
        time_ms=e.time_ms, seq=e.seq,
    )
