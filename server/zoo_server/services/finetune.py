"""zoo.v1 FineTuneService: upload datasets, run jobs, watch them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from zoo.errors import InvalidInputError
from zoo_api.v1 import common_pb2, finetune_pb2, finetune_pb2_grpc
from zoo_server.datasets import DatasetStore, Header
from zoo_server.jobs import HYPERPARAMETERS, JobManager, state_filter
from zoo_server.metrics import Metrics


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


def event_proto(job_id: str, event: dict[str, Any], seq: int = 0) -> finetune_pb2.JobEvent:
    message = finetune_pb2.JobEvent(
        job_id=job_id, seq=seq, kind=finetune_pb2.JobEvent.Kind.Value(event.get("kind", "LOG")),
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
    def __init__(self, datasets: DatasetStore, jobs: JobManager, metrics: Metrics | None,
                 idle_s: float | None = None):
        self.datasets, self.jobs, self.metrics = datasets, jobs, metrics
        self.idle_s = idle_s  # a watch whose job says nothing this long ends (clients resume)

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

    def DeleteDataset(self, request: finetune_pb2.DeleteDatasetRequest, context: Any
                      ) -> finetune_pb2.DeleteDatasetResponse:
        row = self.datasets.delete(request.dataset_id)
        return finetune_pb2.DeleteDatasetResponse(dataset_id=row["id"], size=row["size"])

    def GetJob(self, request: finetune_pb2.GetJobRequest, context: Any) -> finetune_pb2.Job:
        return job_proto(self.jobs.get(request.job_id))

    def ListJobs(self, request: finetune_pb2.ListJobsRequest, context: Any
                 ) -> finetune_pb2.ListJobsResponse:
        if request.limit < 0:
            raise InvalidInputError(f"limit must be 0 (100) or positive, got {request.limit}")
        state = state_filter(request.state, {v: k for k, v in finetune_pb2.JobState.items()})
        jobs = self.jobs.list(state, min(request.limit or 100, 1000))
        return finetune_pb2.ListJobsResponse(jobs=[job_proto(j) for j in jobs])

    def CancelJob(self, request: finetune_pb2.CancelJobRequest, context: grpc.ServicerContext
                  ) -> finetune_pb2.Job:
        remaining = context.time_remaining()
        wait = 10.0 if remaining is None else max(0.0, min(10.0, remaining - 0.5))
        return job_proto(self.jobs.cancel(request.job_id, wait))

    def WatchJob(self, request: finetune_pb2.WatchJobRequest, context: grpc.ServicerContext
                 ) -> Iterator[finetune_pb2.JobEvent]:
        if request.after < 0:
            raise InvalidInputError(f"after must be 0 (from the start) or an event's seq, got "
                                    f"{request.after}")
        for seq, event in self.jobs.watch(request.job_id, context.is_active, request.after,
                                          self.idle_s):
            yield event_proto(request.job_id, event, seq)


__all__ = ["FineTuneService", "event_proto", "job_proto"]
