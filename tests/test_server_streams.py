"""Issue 13, items 2 and 3, against a real `zoo serve` with a model: 70 uploads that send a
header and stall leave Health, ListModels and Classify answering and end after the idle
limit, their threads freed; 10,000 tiny images in one request are refused before any is
decoded, through zoo.v1 and the Open Inference Protocol alike; a silent ClassifyStream is
answered, then closed. (The limits' unit tests, without a model: test_stream_limits.py.)
"""

from __future__ import annotations

import io
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from tests.conftest import TINY
from tests.serving import (
    ServerProcess,
    Stubs,
    distinct_images,
    metric,
    mirror_env,
    reset_peak,
    spec,
    status_kib,
    wait_for,
)
from zoo_api.v1 import finetune_pb2, inference_pb2, models_pb2
from zoo_oip import grpc_service_pb2 as oip
from zoo_oip import grpc_service_pb2_grpc as oip_grpc

pytestmark = pytest.mark.slow
IDLE_S = 5
MAX_STREAMS = 16  # the default
MIB = 1 << 20


@pytest.fixture(scope="module")
def served(pretrained_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("streams")
    server = ServerProcess(root / "home", mirror_env(pretrained_tiny, root), "--preload", TINY,
                           "--stream-idle", str(IDLE_S), "--metrics-port", "0")
    stubs = Stubs(server.target)
    try:
        yield server, stubs
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-20:])


def stall(stubs: Stubs, release: threading.Event) -> grpc.Future:
    """An upload that sends its header and then nothing."""
    header = finetune_pb2.DatasetHeader(format=finetune_pb2.IMAGE_TAR, sha256="0" * 64,
                                        size=1 << 20)

    def requests():
        yield finetune_pb2.UploadDatasetRequest(header=header)
        release.wait(120)

    return stubs.finetune.UploadDataset.future(requests(), timeout=120)


def timed(call, *args, **kwargs) -> float:
    started = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - started


def test_seventy_stalled_uploads_leave_the_server_answering(served):
    server, stubs = served
    image = distinct_images(1, seed=7)[0]
    health = health_pb2_grpc.HealthStub(stubs.channel)
    stubs.inference.Classify(inference_pb2.ClassifyRequest(model=spec(), images=[image]))
    release = threading.Event()
    started = time.monotonic()
    calls = [stall(stubs, release) for _ in range(70)]
    try:
        # Past the cap, streams are refused at once...
        refused = wait_for(lambda: (r := [c for c in calls if c.done()]) and
                           len(r) >= 70 - MAX_STREAMS and r, timeout=IDLE_S - 1)
        assert len(refused) == 70 - MAX_STREAMS, "only the streams over the cap end early"
        for call in refused:
            assert call.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-streams" in call.exception().details()
        assert metric(server.metrics(), "zoo_streams_open") == MAX_STREAMS
        # ...and with the cap's worth stalled, unary calls find threads and answer promptly
        # (each has a 5 s deadline; without the cap all 64 RPC threads were taken and they
        # timed out).
        waits = [
            timed(health.Check, health_pb2.HealthCheckRequest(), timeout=5),
            timed(stubs.models.ListModels, models_pb2.ListModelsRequest(pattern="mobilenet*"),
                  timeout=5),
            timed(stubs.inference.Classify, inference_pb2.ClassifyRequest(model=spec(),
                                                                          images=[image]),
                  timeout=5),
        ]
        assert all(not c.done() for c in calls if c not in refused), "the stalls are open"
        threads_held = status_kib(server.process.pid, "Threads")
        print(f"health, ListModels, Classify beside {MAX_STREAMS} stalled uploads: "
              + ", ".join(f"{w * 1000:.0f} ms" for w in waits))
        # The stalled ones end after the idle limit, with a status that says why.
        held = [c for c in calls if c not in refused]
        for call in held:
            error = call.exception(timeout=IDLE_S + 30)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert f"the client sent nothing for {IDLE_S} s" in error.details()
        assert time.monotonic() - started >= IDLE_S
        # Their threads are free: no stream is open, and each one's reader thread is gone
        # (the RPC pool keeps its idle threads for the next calls).
        wait_for(lambda: metric(server.metrics(), "zoo_streams_open") == 0, timeout=10)
        wait_for(lambda: status_kib(server.process.pid, "Threads") <= threads_held - MAX_STREAMS,
                 timeout=10)
    finally:
        release.set()
    check = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_ten_thousand_tiny_images_are_refused_before_decoding(served):
    server, stubs = served
    images = [tiny_png()] * 10_000
    infer = oip_grpc.GRPCInferenceServiceStub(stubs.channel).ModelInfer
    oip_request = oip.ModelInferRequest(model_name=TINY, inputs=[oip.ModelInferRequest.InferInputTensor(
        name="image", datatype="BYTES", shape=[len(images), 1],
        contents=oip.InferTensorContents(bytes_contents=images))])
    cases = {
        "Classify": (stubs.inference.Classify,
                     inference_pb2.ClassifyRequest(model=spec(), images=images)),
        "Embed": (stubs.inference.Embed, inference_pb2.EmbedRequest(model=spec(), images=images)),
        "ModelInfer": (infer, oip_request),
    }
    for name, (call, request) in cases.items():
        pid = server.process.pid
        reset_peak(pid)
        before = status_kib(pid, "VmRSS")
        with pytest.raises(grpc.RpcError) as error:
            call(request, timeout=30)
        growth = (status_kib(pid, "VmHWM") - before) / 1024
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, name
        assert "10,000 images in one request" in error.value.details()
        assert "(--max-inputs)" in error.value.details()
        assert growth < 200, f"{name}: the server grew by {growth:.0f} MB"
    texts = inference_pb2.EmbedRequest(model=spec("minilm_l6_v2"), texts=["a"] * 257)
    with pytest.raises(grpc.RpcError) as error:
        stubs.inference.Embed(texts, timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "257 texts in one request" in error.value.details()


def test_a_silent_classify_stream_is_answered_then_closed(served):
    stubs = served[1]
    release = threading.Event()
    image = distinct_images(1, seed=3)[0]

    def requests():
        yield inference_pb2.ClassifyStreamRequest(request_id="a", model=spec(), image=image)
        yield inference_pb2.ClassifyStreamRequest(request_id="b", model=spec(), image=b"junk")
        release.wait(60)

    responses = stubs.inference.ClassifyStream(requests(), timeout=60)
    answered = []
    try:
        with pytest.raises(grpc.RpcError) as error:
            for response in responses:
                answered.append((response.request_id, response.error_code))
    finally:
        release.set()
    assert sorted(answered) == [("a", ""), ("b", "INVALID_ARGUMENT")]
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"ClassifyStream: the client sent nothing for {IDLE_S} s" in error.value.details()
