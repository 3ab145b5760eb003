"""Fuzzing every RPC a real `zoo serve` registers: random protobuf messages built from each
method's request descriptor, and mutated ones (a message's bytes flipped, cut, spliced), sent
as raw bytes, for every method of zoo.v1 and of the Open Inference Protocol.

The methods come from the services the server registers (zoo_server.server.SERVICES), so a new
RPC is fuzzed without a line here. Every answer must be OK or a status a client can act on,
never INTERNAL or UNKNOWN (an unhandled exception); after every example the server still
answers its health check, its resident memory stays within MEMORY_BOUND_MB of what it was
once warmed up (sampled from /proc after each example), and when the file is done nothing
has appeared in its home outside the dataset store, and its temporary folder is empty.

About a minute at the default scale on a loaded 2-core machine; ZOO_FUZZ_SCALE=10 runs ten
times the examples with fresh random choices (by default they are the same on every run).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.archives import tar_bytes, valid_members
from tests.conftest import TINY
from tests.serving import (
    ServerProcess,
    Stubs,
    distinct_images,
    huge_png_header,
    mirror_env,
    status_kib,
)
from zoo_api.v1 import finetune_pb2, models_pb2
from zoo_server.server import SERVICES

pytestmark = pytest.mark.slow
SCALE = float(os.environ.get("ZOO_FUZZ_SCALE", "1"))
EXAMPLES = 25  # per method and kind of example, at scale 1
MEMORY_BOUND_MB = 200
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
METHODS = [(service, method) for service in SERVICES for method in service.methods]
ESCAPE = Path("/tmp/zoo-fuzz-rpc-escape")


def fuzz(examples: int) -> settings:
    return settings(deadline=timedelta(seconds=30), max_examples=max(1, int(examples * SCALE)),
                    derandomize=SCALE == 1, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


# --- messages from descriptors ---------------------------------------------------------------

IMAGE = distinct_images(1, seed=5)[0]
UPLOAD = tar_bytes(valid_members())
# Values that reach past the first checks: the served model's name, names that look like
# paths or ids, an image that decodes, one whose header claims 400 megapixels.
STRINGS = st.text(max_size=24) | st.sampled_from([
    TINY, "mobilenet_v2", "..", "../../etc/passwd", str(ESCAPE), "*", "job_0000000000000000",
    "ds_0000000000000000", "image", "pixels", "text", "top_k", "BYTES", "FP32", "x" * 300])
BYTES = st.binary(max_size=64) | st.sampled_from([IMAGE, huge_png_header(), UPLOAD, b"\0" * 16])
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, -1, 0, 1, 2, 3, 96, 1000, 10_000, 2**31 - 1, 2**40)
             if low <= v <= high]
    return st.sampled_from(edges) | st.integers(max(low, -100), min(high, 300)) | \
        st.integers(low, high)


def scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in INT_RANGES:
        return integers(*INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64) | \
            st.sampled_from([0.0, -1.0, 1e-300, math.inf, -math.inf, math.nan])
    if kind == FieldDescriptor.TYPE_STRING:
        return STRINGS
    if kind == FieldDescriptor.TYPE_BYTES:
        return BYTES
    if kind == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: unknown numbers too
        return st.sampled_from([v.number for v in field.enum_type.values]) | \
            st.integers(-3, 100)
    assert kind == FieldDescriptor.TYPE_MESSAGE
    return messages(field.message_type, depth + 1)


def field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key, value = message.fields_by_name["key"], message.fields_by_name["value"]
        return st.dictionaries(scalar(key, depth), scalar(value, depth), max_size=3)
    if field.is_repeated:
        return st.lists(scalar(field, depth), max_size=4)
    return scalar(field, depth)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random messages of `descriptor`'s type: any subset of its fields set, recursively."""
    cls = GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    fields = {f.name: st.deferred(lambda f=f: field_values(f, depth))
              for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: build(cls, values))


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            target.extend(value)
        elif isinstance(value, Message):
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` with a few bytes flipped, cut, inserted, dropped or a span repeated."""

    @st.composite
    def mutate(draw: Any) -> bytes:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["set", "flip", "cut", "insert", "delete", "repeat"]))
            at = draw(st.integers(0, max(len(buf) - 1, 0)))
            if kind == "set" and buf:
                buf[at] = draw(st.integers(0, 255))
            elif kind == "flip" and buf:
                buf[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "cut":
                del buf[at:]
            elif kind == "insert":
                buf[at:at] = draw(st.binary(min_size=1, max_size=16))
            elif kind == "delete":
                del buf[at:at + draw(st.integers(1, 32))]
            elif kind == "repeat":
                buf[at:at] = buf[at:at + draw(st.integers(1, 64))]
        return bytes(buf)

    return mutate()


def seeds(method: MethodDescriptor) -> list[Message]:
    """Requests that pass every check, for the methods where that is easy: mutating them
    reaches past parsing and into decoding, tensors and archives."""
    cls = GetMessageClass(method.input_type)
    model = {"name": TINY}
    if method.name == "Classify":
        return [cls(model=model, images=[IMAGE], top_k=3)]
    if method.name == "Embed":
        return [cls(model=model, images=[IMAGE])]
    if method.name == "ClassifyStream":
        return [cls(request_id="1", model=model, image=IMAGE)]
    if method.name in ("GetModel", "LoadModel"):
        return [cls(model=model)]
    if method.name == "ModelInfer":
        tensor = {"name": "image", "datatype": "BYTES", "shape": [1, 1],
                  "contents": {"bytes_contents": [IMAGE]}}
        return [cls(model_name=TINY, inputs=[tensor])]
    if method.name in ("ModelMetadata", "ModelReady"):
        return [cls(name=TINY)]
    if method.name == "UploadDataset":
        header = finetune_pb2.DatasetHeader(format=finetune_pb2.IMAGE_TAR, size=len(UPLOAD),
                                            sha256=hashlib.sha256(UPLOAD).hexdigest())
        return [cls(header=header), cls(chunk=UPLOAD)]
    return [cls()]


# --- the server ------------------------------------------------------------------------------


def home_files(home: Path) -> set[str]:
    """Everything in the home but the dataset store, the database's files and the download
    cache's empty lock files (a FetchModel of a model the mirror lacks leaves one, as
    filelock does by design)."""
    return {str(p.relative_to(home)) for p in home.rglob("*")
            if p.relative_to(home).parts[0] not in ("datasets", "tmp")
            and not p.name.startswith("server.db")
            and not (p.parent.name == "locks" and p.suffix == ".lock" and not p.stat().st_size)}


@pytest.fixture(scope="module")
def served(pretrained_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-rpcs")
    server = ServerProcess(root / "home", mirror_env(pretrained_tiny, root), "--preload", TINY,
                           "--stream-idle", "2", "--max-upload-mb", "1")
    stubs = Stubs(server.target)
    # Warm up what fuzzing may reach legitimately (both weights files fetched, the classifier
    # and the image embedder loaded), then take the memory and files to compare with.
    for no_top in (False, True):
        list(stubs.models.FetchModel(models_pb2.FetchModelRequest(model={"name": TINY},
                                                                  no_top=no_top)))
    for name in ("Classify", "Embed"):
        method = next(m for _, m in METHODS if m.name == name)
        stubs.channel.unary_unary(f"/zoo.v1.InferenceService/{name}")(
            seeds(method)[0].SerializeToString(), timeout=120)
    state = {"baseline_kib": status_kib(server.process.pid, "VmRSS"), "peak_kib": 0,
             "files": home_files(server.home), "examples": 0, "codes": Counter()}
    try:
        yield server, stubs, state
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-20:])


def invoke(channel: grpc.Channel, path: str, method: MethodDescriptor, payloads: list[bytes]
           ) -> grpc.StatusCode:
    """Send `payloads` as they are (one for a unary request) and read the whole answer."""
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
        (method.client_streaming, method.server_streaming)]
    call = kind(path)  # no serializers: bytes go out and come back as they are
    request: Any = iter(payloads) if method.client_streaming else payloads[0]
    try:
        answer = call(request, timeout=30)
        if method.server_streaming:
            for _ in answer:
                pass
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def check(served: Any, method: MethodDescriptor, service: Any, payloads: list[bytes]) -> None:
    server, stubs, state = served
    path = f"/{service.full_name}/{method.name}"
    code = invoke(stubs.channel, path, method, payloads)
    event(f"{method.name}: {code.name}")
    state["codes"][code.name] += 1
    assert code not in FORBIDDEN, f"{path} answered {code.name}; see the server log"
    health = health_pb2_grpc.HealthStub(stubs.channel).Check(health_pb2.HealthCheckRequest(),
                                                             timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    rss = status_kib(server.process.pid, "VmRSS")
    state["peak_kib"] = max(state["peak_kib"], rss)
    state["examples"] += 1
    growth = (rss - state["baseline_kib"]) / 1024
    assert growth < MEMORY_BOUND_MB, f"after {path} the server had grown by {growth:.0f} MB"
    assert not ESCAPE.exists()


def requests_for(method: MethodDescriptor) -> st.SearchStrategy[list[Message]]:
    message = messages(method.input_type)
    return st.lists(message, max_size=4) if method.client_streaming else message.map(
        lambda m: [m])


IDS = [f"{service.name}.{method.name}" for service, method in METHODS]


@pytest.mark.parametrize(("service", "method"), METHODS, ids=IDS)
def test_random_messages(served, service, method):
    @fuzz(EXAMPLES)
    @given(requests=requests_for(method))
    def run(requests: list[Message]) -> None:
        check(served, method, service, [r.SerializeToString() for r in requests])

    run()


@pytest.mark.parametrize(("service", "method"), METHODS, ids=IDS)
def test_mutated_messages(served, service, method):
    @fuzz(EXAMPLES)
    @given(base=st.sampled_from(seeds(method)) | messages(method.input_type), data=st.data())
    def run(base: Message, data: st.DataObject) -> None:
        payload = data.draw(mutated(base.SerializeToString()))
        payloads = [payload]
        if method.client_streaming:  # the mutated message among untouched ones
            payloads = [s.SerializeToString() for s in seeds(method)]
            payloads.insert(data.draw(st.integers(0, len(payloads))), payload)
        check(served, method, service, payloads)

    run()


def test_zz_nothing_left_outside_the_dataset_store(served):
    """Last in the module: what all the examples above left behind."""
    server, _, state = served
    assert state["examples"] >= 2 * len(METHODS)
    assert home_files(server.home) == state["files"]
    tmp = server.home / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    print(f"{state['examples']} examples; server RSS peak {state['peak_kib'] / 1024:.0f} MB, "
          f"{(state['peak_kib'] - state['baseline_kib']) / 1024:+.0f} MB over the warmed-up "
          f"{state['baseline_kib'] / 1024:.0f} MB; answers: "
          + ", ".join(f"{code} {n}" for code, n in state["codes"].most_common()))


def test_every_zoo_v1_service_is_served_and_fuzzed():
    from zoo_api.v1 import common_pb2, inference_pb2

    declared = {s.full_name for module in (common_pb2, finetune_pb2, inference_pb2, models_pb2)
                for s in module.DESCRIPTOR.services_by_name.values()}
    assert declared <= {s.full_name for s in SERVICES}
    assert len(METHODS) >= 22
