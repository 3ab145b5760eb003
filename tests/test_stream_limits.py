"""Issue 13, items 2 and 3, below a full server: the limit on open streams, the idle limit
of client streams (and that it frees the threads), probes on their own pool, WatchJob's
resumable streams through both clients, the inputs cap and the decode budget.

The servers here are real gRPC servers in this process, with the real handlers
(zoo_server.handlers), FineTuneService, dataset store and job table, and no model: no
TensorFlow is imported, so each test takes about a second. The same limits against a
real `zoo serve` with a model are in test_server_streams.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from PIL import Image

from tests.archives import tar_bytes, valid_members
from tests.serving import wait_for
from zoo.errors import InvalidInputError
from zoo_api.v1 import finetune_pb2, finetune_pb2_grpc, models_pb2, models_pb2_grpc
from zoo_client import AsyncZooClient, ZooClient, calls
from zoo_server.budget import MemoryBudget
from zoo_server.config import ServerConfig
from zoo_server.datasets import DatasetStore, Limits
from zoo_server.db import Database, now_ms
from zoo_server.errors import LimitExceededError
from zoo_server.handlers import StreamLimit, generic_handler, health_handler
from zoo_server.inference import Inference
from zoo_server.jobs import JobManager
from zoo_server.metrics import Metrics
from zoo_server.services.finetune import FineTuneService
from zoo_server.store import ModelStore

FINETUNE = finetune_pb2.DESCRIPTOR.services_by_name["FineTuneService"]
MODELS = models_pb2.DESCRIPTOR.services_by_name["ModelService"]
IDLE_S = 0.5


class BlockingModels(models_pb2_grpc.ModelServiceServicer):
    """ListModels waits for `release`: a unary call that holds its RPC thread."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def ListModels(self, request, context):  # noqa: N802
        self.entered.release()
        self.release.wait(30)
        return models_pb2.ListModelsResponse()


class Served:
    """A gRPC server with the real handlers on FineTuneService (dataset store and job table in
    `home`, no workers) and a ModelService whose ListModels blocks."""

    def __init__(self, home: Path, *, rpc_threads: int = 8, max_streams: int = 3,
                 idle_s: float = IDLE_S):
        self.db = Database(home / "server.db")
        self.datasets = DatasetStore(home, self.db, Limits(1 << 20, 1 << 20, 100))
        self.jobs = JobManager(home, self.db, ModelStore(home), self.datasets, ServerConfig())
        self.metrics = Metrics()
        self.streams = StreamLimit(max_streams, idle_s)
        self.models = BlockingModels()
        self.probes = ThreadPoolExecutor(1, thread_name_prefix="probe")
        self.health = health.HealthServicer()
        self.server = grpc.server(ThreadPoolExecutor(rpc_threads, thread_name_prefix="rpc"))
        self.server.add_generic_rpc_handlers((
            generic_handler(FINETUNE, FineTuneService(self.datasets, self.jobs, self.metrics,
                                                      idle_s),
                            self.metrics, streams=self.streams),
            generic_handler(MODELS, self.models, self.metrics, streams=self.streams),
            health_handler(self.health, self.probes)))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.target = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.target)
        self.finetune = finetune_pb2_grpc.FineTuneServiceStub(self.channel)
        self.model_stub = models_pb2_grpc.ModelServiceStub(self.channel)

    def calls(self, method: str) -> int:
        return int(sum(s.value for m in self.metrics.requests.collect() for s in m.samples
                       if s.name.endswith("_total") and s.labels["method"] == method))

    def close(self) -> None:
        self.models.release.set()
        self.channel.close()
        self.server.stop(0).wait()
        self.probes.shutdown(wait=False)
        self.db.close()


@pytest.fixture()
def served(tmp_path: Path):
    server = Served(tmp_path / "home")
    yield server
    server.close()


def readers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stream-reader:")]


class Stall:
    """An UploadDataset that sends its header and then nothing until `stop`."""

    def __init__(self, stub: finetune_pb2_grpc.FineTuneServiceStub, timeout: float = 30):
        self.stop = threading.Event()
        header = finetune_pb2.DatasetHeader(format=finetune_pb2.IMAGE_TAR, sha256="0" * 64,
                                            size=1000)

        def requests():
            yield finetune_pb2.UploadDatasetRequest(header=header)
            self.stop.wait(timeout)

        self.started = time.monotonic()
        self.future = stub.UploadDataset.future(requests(), timeout=timeout)

    def error(self) -> grpc.RpcError:
        error = self.future.exception(timeout=30)
        assert isinstance(error, grpc.RpcError)
        return error


# --- streams: a cap, and an idle limit ---------------------------------------------------------


def test_streams_over_the_cap_are_refused_at_once_and_unary_calls_go_on(served):
    stalls = [Stall(served.finetune, timeout=60) for _ in range(3)]
    wait_for(lambda: served.streams.open == 3, timeout=10)
    refused = Stall(served.finetune).error()
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "3 streaming calls are open" in refused.details()
    assert "--max-streams" in refused.details()
    watch = served.finetune.WatchJob(finetune_pb2.WatchJobRequest(job_id="job_0"), timeout=10)
    with pytest.raises(grpc.RpcError) as error:
        list(watch)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "every stream counts"
    with pytest.raises(grpc.RpcError) as error:  # a unary call still finds a thread
        served.finetune.GetJob(finetune_pb2.GetJobRequest(job_id="job_0000000000000000"),
                               timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    for stall in stalls:
        stall.stop.set()


def test_a_silent_upload_ends_with_deadline_exceeded_and_frees_its_threads(served):
    assert readers() == []
    stalls = [Stall(served.finetune) for _ in range(3)]
    for stall in stalls:
        error = stall.error()
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error.details() == ("UploadDataset: the client sent nothing for 0.5 s (the "
                                   "server's --stream-idle); the stream is closed")
        assert IDLE_S <= time.monotonic() - stall.started < 10
    # The handler's RPC thread and the stream's reader thread are both free again, though
    # the clients never closed their request streams.
    wait_for(lambda: served.streams.open == 0 and not readers(), timeout=10)
    assert [Stall(served.finetune).error().code() for _ in range(3)] == \
        [grpc.StatusCode.DEADLINE_EXCEEDED] * 3, "the slots are free for new streams"
    for stall in stalls:
        stall.stop.set()
    wait_for(lambda: not readers(), timeout=10)


def test_uploads_that_keep_sending_are_not_cut(served):
    data = tar_bytes(valid_members())
    header = finetune_pb2.DatasetHeader(format=finetune_pb2.IMAGE_TAR, size=len(data),
                                        sha256=hashlib.sha256(data).hexdigest())

    def slow():  # every chunk comes in under the idle limit; the whole upload takes longer
        yield finetune_pb2.UploadDatasetRequest(header=header)
        for i in range(0, len(data), 1024):
            time.sleep(IDLE_S / 5)
            yield finetune_pb2.UploadDatasetRequest(chunk=data[i:i + 1024])

    started = time.monotonic()
    response = served.finetune.UploadDataset(slow(), timeout=60)
    assert time.monotonic() - started > IDLE_S
    assert response.examples == 4 and list(response.classes) == ["cat", "dog"]
    bad = served.channel.stream_unary("/zoo.v1.FineTuneService/UploadDataset",
                                      request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as error:
        bad(iter([finetune_pb2.UploadDatasetRequest(header=header).SerializeToString(),
                  b"\x12\xff\xff\xff"]), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid zoo.v1.UploadDatasetRequest" in error.value.details()
    wait_for(lambda: served.streams.open == 0 and not readers(), timeout=10)


def test_health_answers_while_every_rpc_thread_is_busy(tmp_path):
    served = Served(tmp_path / "home", rpc_threads=2, max_streams=1)
    try:
        busy = [served.model_stub.ListModels.future(models_pb2.ListModelsRequest(), timeout=30)
                for _ in range(3)]
        for _ in range(2):
            assert served.models.entered.acquire(timeout=10)
        check = health_pb2_grpc.HealthStub(served.channel).Check
        for _ in range(20):  # each within its deadline: the RPC pool is full and queueing
            assert check(health_pb2.HealthCheckRequest(), timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING
        served.models.release.set()
        for call in busy:
            call.result(timeout=10)
    finally:
        served.close()


def test_stream_settings_are_checked():
    assert ServerConfig().max_streams < ServerConfig().rpc_threads
    with pytest.raises(InvalidInputError, match="below rpc_threads"):
        ServerConfig(max_streams=64, rpc_threads=64)
    with pytest.raises(InvalidInputError, match="stream_idle_s must be positive"):
        ServerConfig(stream_idle_s=0)
    config = ServerConfig.from_env({"ZOO_SERVE_MAX_STREAMS": "4",
                                    "ZOO_SERVE_STREAM_IDLE_S": "2.5"})
    assert (config.max_streams, config.stream_idle_s) == (4, 2.5)


# --- WatchJob: the server ends quiet watches; the clients resume without repeats ---------------


def add_job(served: Served) -> str:
    job_id = "job_" + hashlib.sha256(str(time.monotonic()).encode()).hexdigest()[:16]
    served.db.add_job({"id": job_id, "state": "QUEUED", "base": "b", "dataset_id": "ds",
                       "output_name": "x", "hyperparameters": {}, "epochs": 1,
                       "created_ms": now_ms()})
    served.db.add_event(job_id, {"kind": "STATE", "state": "QUEUED", "message": "queued"})
    return job_id


def play(served: Served, job_id: str, final_log: bool = False) -> threading.Thread:
    """The job's life, with silences longer than the idle limit between its events."""

    def run() -> None:
        for kind, fields in [("STATE", {"state": "RUNNING", "message": "running"}),
                             ("EPOCH", {"epoch": 1, "epochs": 2, "loss": 0.5}),
                             ("EPOCH", {"epoch": 2, "epochs": 2, "loss": 0.25})]:
            time.sleep(IDLE_S * 2.5)
            served.db.add_event(job_id, {"kind": kind, **fields})
        time.sleep(IDLE_S * 2.5)
        served.db.update_job(job_id, state="SUCCEEDED", finished_ms=now_ms())
        served.db.add_event(job_id, {"kind": "STATE", "state": "SUCCEEDED", "message": "done"})
        if final_log:  # an event after the final state: the clients must still stop
            served.db.add_event(job_id, {"kind": "LOG", "message": "afterword"})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_quiet_watch_ends_and_resumes_after_the_last_event(served):
    job_id = add_job(served)
    first = list(served.finetune.WatchJob(finetune_pb2.WatchJobRequest(job_id=job_id),
                                          timeout=10))
    assert [(e.kind, e.state) for e in first] == [(finetune_pb2.JobEvent.STATE,
                                                  finetune_pb2.QUEUED)]
    assert first[0].seq > 0, "the stream ended (OK) after the idle limit, the job still queued"
    served.db.add_event(job_id, {"kind": "LOG", "message": "later"})
    again = list(served.finetune.WatchJob(
        finetune_pb2.WatchJobRequest(job_id=job_id, after=first[0].seq), timeout=10))
    assert [e.message for e in again] == ["later"] and again[0].seq > first[0].seq
    with pytest.raises(grpc.RpcError) as error:
        list(served.finetune.WatchJob(finetune_pb2.WatchJobRequest(job_id=job_id, after=-1)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    wait_for(lambda: served.streams.open == 0, timeout=10)


@pytest.mark.parametrize("final_log", [False, True])
def test_zoo_client_watch_job_resumes_transparently(served, final_log):
    job_id = add_job(served)
    life = play(served, job_id, final_log)
    with ZooClient(served.target) as zoo:
        events = list(zoo.watch_job(job_id, timeout=60))
    life.join()
    assert [(e.kind, e.state if e.kind == "state" else e.epoch) for e in events][:5] == [
        ("state", "queued"), ("state", "running"), ("epoch", 1), ("epoch", 2),
        ("state", "succeeded")]
    assert len(events) == 5 + final_log, "every event once"
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs))
    assert served.calls("WatchJob") >= 4, "the server ended quiet streams, the client resumed"


def test_async_client_watch_job_resumes_transparently(served):
    job_id = add_job(served)
    life = play(served, job_id)

    async def watch() -> list:
        async with AsyncZooClient(served.target) as zoo:
            return [e async for e in zoo.watch_job(job_id, timeout=60)]

    events = asyncio.run(watch())
    life.join()
    assert [e.kind for e in events] == ["state", "state", "epoch", "epoch", "state"]
    assert events[-1].state == "succeeded" and len({e.seq for e in events}) == 5
    assert served.calls("WatchJob") >= 4


def test_job_watch_against_a_server_without_seq_does_not_resume():
    watch = calls.JobWatch("job_1")
    watch.seen(finetune_pb2.JobEvent(kind=finetune_pb2.JobEvent.STATE, state=finetune_pb2.QUEUED))
    assert watch.done(), "no seq to resume after: the stream's end is the watch's end"
    watch = calls.JobWatch("job_1")
    watch.seen(finetune_pb2.JobEvent(kind=finetune_pb2.JobEvent.LOG, seq=7))
    assert not watch.done() and watch.request().after == 7


# --- inputs per request and the decode budget ----------------------------------------------


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, "PNG")
    return buf.getvalue()


def inference(**settings) -> Inference:
    return Inference(ServerConfig(**settings), store=None, manager=None)  # type: ignore[arg-type]


def test_ten_thousand_images_are_refused_before_any_is_read():
    tiny = png(1, 1)
    engine = inference()  # no model manager: refused before a model is even looked at
    with pytest.raises(LimitExceededError) as error:
        engine.run_images("classify", None, [tiny] * 10_000, None)  # type: ignore[arg-type]
    assert str(error.value) == ("10,000 images in one request, over the server's limit of 256 "
                                "(--max-inputs); send them in several requests")
    with pytest.raises(LimitExceededError, match="3 texts in one request"):
        inference(max_inputs=2).run_texts("text-embed", None, ["a", "b", "c"], None)  # type: ignore[arg-type]
    engine.close()


def test_decoding_is_reserved_from_the_headers_before_decoding():
    engine = inference(max_image_pixels=4_000_000, decode_budget_mb=100)
    reservation, parallel = engine.reserve_images([png(2000, 2000)] * 3, (96, 96))
    # 3 prepared inputs of 96x96x3 float32, and decoding 2000x2000 RGB at 8 bytes a pixel,
    # as many at once as the pool has threads and what is left of 100 MB has room for.
    room = (100 * 2**20 - 3 * 96 * 96 * 12) // (2000 * 2000 * 8)
    assert parallel == min(3, engine.config.decode_workers, room)
    assert reservation.nbytes == 3 * 96 * 96 * 12 + parallel * 2000 * 2000 * 8
    with pytest.raises(LimitExceededError) as error:
        engine.reserve_images([png(2000, 2000, "RGBA")], (96, 96))  # 64 MB: not now
    assert "MB of the server's decode budget (100 MB, --decode-budget-mb) is free" in \
        str(error.value)
    reservation.shrink(3 * 96 * 96 * 12)
    assert engine.budget.used == 3 * 96 * 96 * 12
    reservation.release()
    reservation.release()
    assert engine.budget.used == 0
    alpha, _ = engine.reserve_images([png(2000, 2000, "RGBA")], (96, 96))
    assert alpha.nbytes == 96 * 96 * 12 + 2000 * 2000 * 16
    alpha.release()
    with pytest.raises(InvalidInputError, match=r"images\[1\]: .*not a readable image"):
        engine.reserve_images([png(2, 2), b"not an image"], (96, 96))
    assert engine.budget.used == 0
    engine.close()


def test_budget_refuses_what_can_never_fit():
    budget = MemoryBudget(10 << 20)
    with pytest.raises(LimitExceededError, match=r"more than the server's decode budget \(10 MB"):
        budget.reserve(11 << 20)
    held, _ = budget.reserve(6 << 20)
    with pytest.raises(LimitExceededError, match="retry, or send fewer or smaller images"):
        budget.reserve(5 << 20)
    held.release()
    with pytest.raises(InvalidInputError, match="decode_budget_mb must hold one image"):
        ServerConfig(decode_budget_mb=100)  # 64 megapixels take up to 977 MB
