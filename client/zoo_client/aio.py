"""`AsyncZooClient`: the asyncio client of the Zoo gRPC API (grpc.aio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from zoo_api.v1 import (
    finetune_pb2_grpc,
    inference_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
)
from zoo_client import calls, channel, types
from zoo_client.errors import from_rpc_error
from zoo_client.inputs import ImageLike, prepared_upload, upload_requests


class AsyncZooClient:
    """The asyncio twin of `ZooClient`, with the same methods as coroutines.

        async with AsyncZooClient("localhost:50051") as zoo:
            await zoo.classify("mobilenet_v2", ["cat.jpg"])
    """

    def __init__(self, target: str = channel.DEFAULT_TARGET, *, token: str | None = None,
                 tls: channel.TLS = None, timeout: float = 30.0, retries: int = 3,
                 max_message_mb: int = channel.DEFAULT_MESSAGE_MB):
        creds = channel.credentials(tls)
        opts = channel.options(max_message_mb)
        self._channel = (grpc.aio.secure_channel(target, creds, opts) if creds
                         else grpc.aio.insecure_channel(target, opts))
        self._stubs: dict[str, Any] = {
            "models": models_pb2_grpc.ModelServiceStub(self._channel),
            "inference": inference_pb2_grpc.InferenceServiceStub(self._channel),
            "finetune": finetune_pb2_grpc.FineTuneServiceStub(self._channel),
        }
        self._metadata = channel.metadata(token)
        self.timeout, self.retries, self.target = timeout, retries, target

    async def __aenter__(self) -> AsyncZooClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def wait_until_serving(self, timeout: float = 60.0) -> None:
        """`ZooClient.wait_until_serving`, awaitable."""
        wait = channel.HealthWait(timeout)
        stub = wait.stub(self._channel)
        while True:
            try:
                if wait.serving(await stub.Check(wait.request, timeout=wait.check_timeout())):
                    return
            except grpc.RpcError as e:
                wait.failed(e)
            if (error := wait.expired()) is not None:
                raise error
            await asyncio.sleep(wait.POLL_S)

    async def _run(self, call: calls.Call, timeout: float | None = None) -> Any:
        method = getattr(self._stubs[call.service], call.method)
        attempts = self.retries + 1 if call.idempotent else 1
        for attempt in range(attempts):
            try:
                response = await method(call.request, timeout=timeout or self.timeout,
                                        metadata=self._metadata)
                return call.convert(response)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    await asyncio.sleep(channel.backoff(attempt))
                    continue
                raise from_rpc_error(e) from e
        raise AssertionError("unreachable")

    async def list_models(self, pattern: str = "", task: str | None = None
                          ) -> list[types.ModelInfo]:
        return await self._run(calls.list_models(pattern, task))  # type: ignore[no-any-return]

    async def get_model(self, name: str, version: int = 0) -> types.ModelInfo:
        return await self._run(calls.get_model(name, version))  # type: ignore[no-any-return]

    async def fetch_model(self, name: str, *, no_top: bool = False,
                          timeout: float | None = None) -> AsyncIterator[types.FetchProgress]:
        request = models_pb2.FetchModelRequest(model=calls.spec(name), no_top=no_top)
        stream = self._stubs["models"].FetchModel(request, timeout=timeout or 3600,
                                                  metadata=self._metadata)
        try:
            async for progress in stream:
                yield calls.fetch_progress(progress)
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from e

    async def load_model(self, name: str, version: int = 0, *, timeout: float | None = None
                         ) -> types.ModelInfo:
        return await self._run(calls.load_model(name, version), timeout or max(self.timeout, 600))  # type: ignore[no-any-return]

    async def unload_model(self, name: str, version: int = 0) -> bool:
        return await self._run(calls.unload_model(name, version))  # type: ignore[no-any-return]

    async def classify(self, model: str, images: Sequence[ImageLike], top_k: int | None = None, *,
                       version: int = 0, timeout: float | None = None
                       ) -> list[list[types.Prediction]]:
        return await self._run(calls.classify(model, images, top_k, version), timeout)  # type: ignore[no-any-return]

    async def classify_text(self, model: str, texts: Sequence[str], top_k: int | None = None, *,
                            version: int = 0, timeout: float | None = None
                            ) -> list[list[types.Prediction]]:
        return await self._run(calls.classify_text(model, texts, top_k, version), timeout)  # type: ignore[no-any-return]

    async def embed(self, model: str, texts: Sequence[str] | None = None, *,
                    images: Sequence[ImageLike] | None = None, normalize: bool = True,
                    version: int = 0, timeout: float | None = None) -> list[list[float]]:
        return await self._run(calls.embed(model, texts, images, normalize, version), timeout)  # type: ignore[no-any-return]

    async def upload_dataset(self, path: str | Path, *, name: str | None = None,
                             timeout: float | None = None) -> types.Dataset:
        with prepared_upload(path) as upload:
            try:
                response = await self._stubs["finetune"].UploadDataset(
                    upload_requests(upload, name or Path(path).name),
                    timeout=timeout or 3600, metadata=self._metadata)
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from e
        return calls.upload_response(response)

    async def delete_dataset(self, dataset_id: str) -> int:
        return await self._run(calls.delete_dataset(dataset_id))  # type: ignore[no-any-return]

    async def finetune(self, base: str, dataset: str | Path, *, name: str | None = None,
                       **hyperparameters: Any) -> types.Job:
        dataset_id = str(dataset)
        if Path(dataset).exists():
            dataset_id = (await self.upload_dataset(dataset)).id
        return await self._run(calls.create_job(base, dataset_id, name, hyperparameters))  # type: ignore[no-any-return]

    async def get_job(self, job_id: str) -> types.Job:
        return await self._run(calls.get_job(job_id))  # type: ignore[no-any-return]

    async def list_jobs(self, state: str | None = None, limit: int = 0) -> list[types.Job]:
        return await self._run(calls.list_jobs(state, limit))  # type: ignore[no-any-return]

    async def cancel_job(self, job_id: str) -> types.Job:
        return await self._run(calls.cancel_job(job_id))  # type: ignore[no-any-return]

    async def watch_job(self, job_id: str, *, timeout: float | None = None
                        ) -> AsyncIterator[types.JobEvent]:
        """As ZooClient.watch_job: streams the server ends early are resumed, no repeats."""
        watch = calls.JobWatch(job_id)
        loop = asyncio.get_running_loop()
        until = None if timeout is None else loop.time() + timeout
        while True:
            left = None if until is None else max(0.001, until - loop.time())
            stream = self._stubs["finetune"].WatchJob(watch.request(), timeout=left,
                                                      metadata=self._metadata)
            try:
                async for event in stream:
                    yield watch.seen(event)
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from e
            if watch.done():
                return
            watch.job_ended(await self.get_job(job_id))

    async def wait(self, job_id: str, *, timeout: float | None = None) -> types.Job:
        async for _ in self.watch_job(job_id, timeout=timeout):
            pass
        return await self.get_job(job_id)
