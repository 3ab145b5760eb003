"""`ZooClient`: the synchronous client of the Zoo gRPC API."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from zoo_api.v1 import (
    finetune_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
)
from zoo_client import calls, channel, types
from zoo_client.errors import ZooClientError, from_code_name, from_rpc_error
from zoo_client.inputs import ImageLike, image_bytes, prepared_upload, upload_requests


class ZooClient:
    """A connection to a Zoo server.

    Every call has a deadline (`timeout` seconds unless a call says otherwise); reads
    and inference retry with backoff when the server is UNAVAILABLE; failures raise
    `zoo_client.errors` exceptions that keep the status code.

        with ZooClient("localhost:50051") as zoo:
            zoo.classify("mobilenet_v2", ["cat.jpg"], top_k=3)
    """

    def __init__(self, target: str = channel.DEFAULT_TARGET, *, token: str | None = None,
                 tls: channel.TLS = None, timeout: float = 30.0, retries: int = 3,
                 max_message_mb: int = channel.DEFAULT_MESSAGE_MB):
        creds = channel.credentials(tls)
        opts = channel.options(max_message_mb)
        self._channel = (grpc.secure_channel(target, creds, opts) if creds
                         else grpc.insecure_channel(target, opts))
        self._stubs: dict[str, Any] = {
            "models": models_pb2_grpc.ModelServiceStub(self._channel),
            "inference": inference_pb2_grpc.InferenceServiceStub(self._channel),
            "finetune": finetune_pb2_grpc.FineTuneServiceStub(self._channel),
        }
        self._metadata = channel.metadata(token)
        self.timeout, self.retries, self.target = timeout, retries, target

    def __enter__(self) -> ZooClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        """Return once the server answers the standard health check with SERVING (it
        answers so only after its `--preload` models are loaded); `Unavailable` after
        `timeout` seconds. For scripts that start a server and then use it."""
        wait = channel.HealthWait(timeout)
        stub = wait.stub(self._channel)
        while True:
            try:
                if wait.serving(stub.Check(wait.request, timeout=wait.check_timeout())):
                    return
            except grpc.RpcError as e:
                wait.failed(e)
            if (error := wait.expired()) is not None:
                raise error
            time.sleep(wait.POLL_S)

    def _run(self, call: calls.Call, timeout: float | None = None) -> Any:
        method = getattr(self._stubs[call.service], call.method)
        attempts = self.retries + 1 if call.idempotent else 1
        for attempt in range(attempts):
            try:
                response = method(call.request, timeout=timeout or self.timeout,
                                  metadata=self._metadata)
                return call.convert(response)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    time.sleep(channel.backoff(attempt))
                    continue
                raise from_rpc_error(e) from e
        raise AssertionError("unreachable")

    # --- models ------------------------------------------------------------------------

    def list_models(self, pattern: str = "", task: str | None = None) -> list[types.ModelInfo]:
        return self._run(calls.list_models(pattern, task))  # type: ignore[no-any-return]

    def get_model(self, name: str, version: int = 0) -> types.ModelInfo:
        return self._run(calls.get_model(name, version))  # type: ignore[no-any-return]

    def fetch_model(self, name: str, *, no_top: bool = False, timeout: float | None = None
                    ) -> Iterator[types.FetchProgress]:
        """Progress of the server downloading the model's weights; the last item is done."""
        request = models_pb2.FetchModelRequest(model=calls.spec(name), no_top=no_top)
        stream = self._stubs["models"].FetchModel(request, timeout=timeout or 3600,
                                                  metadata=self._metadata)
        try:
            for progress in stream:
                yield calls.fetch_progress(progress)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def load_model(self, name: str, version: int = 0, *, timeout: float | None = None
                   ) -> types.ModelInfo:
        return self._run(calls.load_model(name, version), timeout or max(self.timeout, 600))  # type: ignore[no-any-return]

    def unload_model(self, name: str, version: int = 0) -> bool:
        return self._run(calls.unload_model(name, version))  # type: ignore[no-any-return]

    # --- inference ---------------------------------------------------------------------

    def classify(self, model: str, images: Sequence[ImageLike], top_k: int | None = None, *,
                 version: int = 0, timeout: float | None = None) -> list[list[types.Prediction]]:
        """Top-k predictions for each image (paths, bytes, PIL images or uint8 arrays)."""
        return self._run(calls.classify(model, images, top_k, version), timeout)  # type: ignore[no-any-return]

    def classify_stream(self, model: str, images: Iterable[ImageLike], top_k: int | None = None, *,
                        version: int = 0, timeout: float | None = None
                        ) -> Iterator[tuple[str, list[types.Prediction] | ZooClientError]]:
        """(request id, predictions or the error of that one image), in arrival order."""
        spec = calls.spec(model, version)

        def requests() -> Iterator[inference_pb2.ClassifyStreamRequest]:
            for i, image in enumerate(images):
                yield inference_pb2.ClassifyStreamRequest(
                    request_id=str(i), model=spec, image=image_bytes(image), top_k=top_k or 0)

        stream = self._stubs["inference"].ClassifyStream(
            requests(), timeout=timeout or 3600, metadata=self._metadata)
        try:
            for r in stream:
                if r.error_code:
                    yield r.request_id, from_code_name(r.error_code, r.error_message)
                else:
                    yield r.request_id, [types.Prediction(p.label, p.score, p.index)
                                         for p in r.predictions]
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def classify_text(self, model: str, texts: Sequence[str], top_k: int | None = None, *,
                      version: int = 0, timeout: float | None = None
                      ) -> list[list[types.Prediction]]:
        return self._run(calls.classify_text(model, texts, top_k, version), timeout)  # type: ignore[no-any-return]

    def embed(self, model: str, texts: Sequence[str] | None = None, *,
              images: Sequence[ImageLike] | None = None, normalize: bool = True,
              version: int = 0, timeout: float | None = None) -> list[list[float]]:
        """One vector per text (text models) or per image (pooled image features)."""
        return self._run(calls.embed(model, texts, images, normalize, version), timeout)  # type: ignore[no-any-return]

    # --- fine-tuning -------------------------------------------------------------------

    def upload_dataset(self, path: str | Path, *, name: str | None = None,
                       timeout: float | None = None) -> types.Dataset:
        """Upload a folder of class folders, an image archive, or a text CSV/JSONL."""
        with prepared_upload(path) as upload:
            try:
                response = self._stubs["finetune"].UploadDataset(
                    upload_requests(upload, name or Path(path).name),
                    timeout=timeout or 3600, metadata=self._metadata)
            except grpc.RpcError as e:
                raise from_rpc_error(e) from e
        return calls.upload_response(response)

    def delete_dataset(self, dataset_id: str) -> int:
        """Delete an uploaded dataset; returns the bytes its upload took. FailedPrecondition
        while a queued or running job uses it; ModelNotFound (NOT_FOUND) for unknown ids."""
        return self._run(calls.delete_dataset(dataset_id))  # type: ignore[no-any-return]

    def finetune(self, base: str, dataset: str | Path, *, name: str | None = None,
                 **hyperparameters: Any) -> types.Job:
        """Start a fine-tune job. `dataset` is a dataset id, or a path to upload first."""
        dataset_id = str(dataset)
        if Path(dataset).exists():
            dataset_id = self.upload_dataset(dataset).id
        return self._run(calls.create_job(base, dataset_id, name, hyperparameters))  # type: ignore[no-any-return]

    def get_job(self, job_id: str) -> types.Job:
        return self._run(calls.get_job(job_id))  # type: ignore[no-any-return]

    def list_jobs(self, state: str | None = None, limit: int = 0) -> list[types.Job]:
        return self._run(calls.list_jobs(state, limit))  # type: ignore[no-any-return]

    def cancel_job(self, job_id: str) -> types.Job:
        return self._run(calls.cancel_job(job_id))  # type: ignore[no-any-return]

    def watch_job(self, job_id: str, *, timeout: float | None = None) -> Iterator[types.JobEvent]:
        """The job's events from its start, then live ones until it ends (`timeout`: seconds
        for all of it). Streams the server ends while the job is quiet are resumed after
        the last event seen (calls.JobWatch), so no event comes twice."""
        watch = calls.JobWatch(job_id)
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if until is None else max(0.001, until - time.monotonic())
            stream = self._stubs["finetune"].WatchJob(watch.request(), timeout=left,
                                                      metadata=self._metadata)
            try:
                for event in stream:
                    yield watch.seen(event)
            except grpc.RpcError as e:
                raise from_rpc_error(e) from e
            if watch.done():
                return
            watch.job_ended(self.get_job(job_id))

    def wait(self, job_id: str, *, timeout: float | None = None) -> types.Job:
        """Block until the job ends; return its final state."""
        for _ in self.watch_job(job_id, timeout=timeout):
            pass
        return self.get_job(job_id)
