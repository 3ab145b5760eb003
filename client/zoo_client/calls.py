"""Each API call described once: which RPC, the request, how to read the answer.

The sync and async clients only differ in how they run a `Call`, so every request
builder and response converter lives here, shared by both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zoo_api.v1 import common_pb2, finetune_pb2, inference_pb2, models_pb2
from zoo_client import types
from zoo_client.errors import InvalidInput
from zoo_client.inputs import ImageLike, hyperparameters, image_bytes


@dataclass(frozen=True)
class Call:
    service: str  # "models", "inference" or "finetune"
    method: str
    request: Any
    convert: Callable[[Any], Any]
    idempotent: bool  # safe to retry on UNAVAILABLE


def spec(name: str, version: int = 0) -> common_pb2.ModelSpec:
    if not name:
        raise InvalidInput("a model name is required")
    return common_pb2.ModelSpec(name=name, version=version)


def _task(task: str | None) -> int:
    if task is None:
        return common_pb2.TASK_UNSPECIFIED
    if task not in types.TASK_VALUES:
        raise InvalidInput(f"unknown task {task!r}; choose one of {', '.join(types.TASK_VALUES)}")
    return types.TASK_VALUES[task]


def list_models(pattern: str, task: str | None) -> Call:
    request = models_pb2.ListModelsRequest(pattern=pattern, task=_task(task))  # type: ignore[arg-type]
    return Call("models", "ListModels", request,
                lambda r: [types.model_info(m) for m in r.models], True)


def get_model(name: str, version: int) -> Call:
    return Call("models", "GetModel", models_pb2.GetModelRequest(model=spec(name, version)),
                lambda r: types.model_info(r.model), True)


def load_model(name: str, version: int) -> Call:
    return Call("models", "LoadModel", models_pb2.LoadModelRequest(model=spec(name, version)),
                lambda r: types.model_info(r.model), True)


def unload_model(name: str, version: int) -> Call:
    return Call("models", "UnloadModel", models_pb2.UnloadModelRequest(model=spec(name, version)),
                lambda r: bool(r.was_loaded), True)


def _top_k(top_k: int | None) -> int:
    """None (or 0) asks the server for min(5, classes); a larger value is clamped there."""
    if top_k is not None and (isinstance(top_k, bool) or top_k < 0):
        raise InvalidInput(f"top_k must be a positive whole number, got {top_k!r}")
    return top_k or 0


def classify(model: str, images: Sequence[ImageLike], top_k: int | None, version: int) -> Call:
    if isinstance(images, (str, bytes)) or not images:
        raise InvalidInput("give a non-empty list of images")
    request = inference_pb2.ClassifyRequest(
        model=spec(model, version), images=[image_bytes(i) for i in images], top_k=_top_k(top_k))
    return Call("inference", "Classify", request,
                lambda r: [types.predictions(c) for c in r.results], True)


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not texts:
        raise InvalidInput("give a non-empty list of texts")
    return list(texts)


def classify_text(model: str, texts: Sequence[str], top_k: int | None, version: int) -> Call:
    request = inference_pb2.ClassifyTextRequest(model=spec(model, version), texts=_texts(texts),
                                                top_k=_top_k(top_k))
    return Call("inference", "ClassifyText", request,
                lambda r: [types.predictions(c) for c in r.results], True)


def embed(model: str, texts: Sequence[str] | None, images: Sequence[ImageLike] | None,
          normalize: bool, version: int) -> Call:
    if (texts is None) == (images is None):
        raise InvalidInput("give texts or images to embed (one of them)")
    request = inference_pb2.EmbedRequest(
        model=spec(model, version), texts=_texts(texts) if texts is not None else [],
        images=[image_bytes(i) for i in images] if images is not None else [],
        no_normalize=not normalize)
    return Call("inference", "Embed", request,
                lambda r: [list(e.values) for e in r.embeddings], True)


def create_job(base: str, dataset_id: str, name: str | None, hp: dict[str, Any]) -> Call:
    request = finetune_pb2.CreateJobRequest(
        base=spec(base), dataset_id=dataset_id, output_name=name or "",
        hyperparameters=hyperparameters(hp))
    return Call("finetune", "CreateJob", request, types.job, False)


def get_job(job_id: str) -> Call:
    return Call("finetune", "GetJob", finetune_pb2.GetJobRequest(job_id=job_id), types.job, True)


def list_jobs(state: str | None, limit: int) -> Call:
    states = {name: value for value, name in types.JOB_STATES.items()}
    if state is not None and state not in states:
        raise InvalidInput(f"unknown job state {state!r}; choose one of {', '.join(states)}")
    request = finetune_pb2.ListJobsRequest(state=states.get(state or "", 0), limit=limit)  # type: ignore[arg-type]
    return Call("finetune", "ListJobs", request, lambda r: [types.job(j) for j in r.jobs], True)


def cancel_job(job_id: str) -> Call:
    return Call("finetune", "CancelJob", finetune_pb2.CancelJobRequest(job_id=job_id),
                types.job, True)


class JobWatch:
    """Where watching a job stands across the streams it takes.

    A server ends a WatchJob stream when the job has said nothing for its idle limit (each
    open stream holds one of its threads); the last event is then not a final state. The
    clients then watch again after the last event's seq, so a caller sees one stream, with
    no event twice. Whether the job has ended is read from its final STATE event, or, when a
    stream ended without one, from GetJob (`last_pass`: one more stream brings what remains).
    """

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.after = 0
        self.ended = False
        self.resumable = True  # False for a server older than JobEvent.seq
        self.last_pass = False

    def request(self) -> finetune_pb2.WatchJobRequest:
        return finetune_pb2.WatchJobRequest(job_id=self.job_id, after=self.after)

    def seen(self, event: finetune_pb2.JobEvent) -> types.JobEvent:
        converted = types.job_event(event)
        if event.seq:
            self.after = max(self.after, event.seq)
        else:
            self.resumable = False
        if converted.kind == "state" and converted.state in types.TERMINAL_STATES:
            self.ended = True
        return converted

    def done(self) -> bool:
        """After a stream ended normally: whether watching is over (else: is the job over?
        ask `job_ended`, then watch again)."""
        return self.ended or not self.resumable or self.last_pass

    def job_ended(self, job: types.Job) -> None:
        self.last_pass = job.state in types.TERMINAL_STATES


def delete_dataset(dataset_id: str) -> Call:
    if not dataset_id:
        raise InvalidInput("a dataset id is required (UploadDataset returns one)")
    # Not retried: a retry after a lost answer would report NOT_FOUND for a deleted dataset.
    return Call("finetune", "DeleteDataset",
                finetune_pb2.DeleteDatasetRequest(dataset_id=dataset_id), lambda r: int(r.size),
                False)


def upload_response(r: finetune_pb2.UploadDatasetResponse) -> types.Dataset:
    return types.Dataset(r.dataset_id, r.size, r.examples, tuple(r.classes))


def fetch_progress(p: models_pb2.FetchModelProgress) -> types.FetchProgress:
    return types.FetchProgress(p.file, p.bytes_done, p.bytes_total or None, p.done, p.path or None)
