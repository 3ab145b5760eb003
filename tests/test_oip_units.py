"""The Open Inference Protocol layer without a model: tensors in and out of gRPC messages and
HTTP bodies (JSON and the binary tensor data extension), BYTES framing, datatype and shape
errors, Zoo's model signatures, and the HTTP app (routes, auth, limits, error JSON) on a
stand-in backend behind a real uvicorn."""

from __future__ import annotations

import gzip
import json
import struct
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from zoo.errors import InvalidInputError, ModelNotFoundError
from zoo_oip import grpc_service_pb2 as pb
from zoo_server.errors import QueueFullError
from zoo_server.oip import signatures, tensors
from zoo_server.oip.http import HttpServer, OipHttp, build_app
from zoo_server.oip.interface import Call, ModelMetadata
from zoo_server.oip.signatures import Signature
from zoo_server.oip.tensors import InferRequest, InferResponse, RequestedOutput, Tensor

# --- BYTES framing -------------------------------------------------------------------------


def test_bytes_elements_are_length_prefixed_little_endian():
    raw = tensors.serialize_bytes([b"ab", b"", b"\xff" * 3])
    assert raw == b"\x02\0\0\0ab" + b"\0\0\0\0" + b"\x03\0\0\0\xff\xff\xff"
    assert tensors.deserialize_bytes(raw, 3, "x") == [b"ab", b"", b"\xff" * 3]


@pytest.mark.parametrize(("raw", "count", "message"), [
    (b"\x02\0\0\0ab", 2, "needs 2 BYTES elements but the data holds 1"),
    (b"\x05\0\0\0ab", 1, "claims 5 bytes but only 2 remain"),
    (b"\x02\0\0\0ab\x01\0", 2, "ends inside an element's 4-byte length prefix"),
])
def test_bad_bytes_framing_is_refused(raw, count, message):
    with pytest.raises(InvalidInputError, match=message):
        tensors.deserialize_bytes(raw, count, "input 'image'")


# --- gRPC ------------------------------------------------------------------------------------


def grpc_request(**inputs: Any) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="m", id="7", **inputs)


def test_grpc_raw_contents_are_read_in_order_of_inputs():
    pixels = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    request = grpc_request(
        inputs=[pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP32",
                                                      shape=[1, 2, 2, 3]),
                pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES",
                                                      shape=[2, 1])],
        raw_input_contents=[pixels.tobytes(), tensors.serialize_bytes([b"a", b"bc"])])
    request.parameters["top_k"].int64_param = 3
    request.outputs.add(name="top_label").parameters["binary_data"].bool_param = True
    parsed = tensors.grpc_request(request)
    assert parsed.id == "7" and parsed.parameters == {"top_k": 3}
    assert parsed.outputs == [RequestedOutput("top_label", {"binary_data": True})]
    np.testing.assert_array_equal(parsed.inputs[0].data, pixels)
    assert parsed.inputs[1].shape == (2, 1) and parsed.inputs[1].data[1, 0] == b"bc"


def test_grpc_typed_contents_and_their_errors():
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="INT8", shape=[2])
    tensor.contents.int_contents.extend([1, -2])
    parsed = tensors.grpc_request(grpc_request(inputs=[tensor]))
    assert parsed.inputs[0].data.dtype == np.int8 and parsed.inputs[0].data.tolist() == [1, -2]
    tensor.contents.int_contents[0] = 300
    with pytest.raises(InvalidInputError, match="does not fit datatype INT8"):
        tensors.grpc_request(grpc_request(inputs=[tensor]))
    tensor.shape[:] = [3]
    with pytest.raises(InvalidInputError, match=r"shape \[3\] \(3 elements\).*2 elements"):
        tensors.grpc_request(grpc_request(inputs=[tensor]))


@pytest.mark.parametrize(("change", "message"), [
    (dict(datatype="FP33"), "datatype 'FP33', which is not one of the protocol's"),
    (dict(shape=[1, -1]), "every dimension must be a non-negative integer"),
    (dict(shape=[2, 3]), r"holds 16 bytes, not 6 x 4"),
    (dict(raw=[b"", b""]), "raw_input_contents has 2 entries for 1 inputs"),
    (dict(contents=True), "sets contents although the request uses raw_input_contents"),
])
def test_grpc_malformed_tensors_are_invalid_input(change, message):
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="x", datatype=change.get("datatype", "FP32"), shape=change.get("shape", [4]))
    if change.get("contents"):
        tensor.contents.fp32_contents.append(1.0)
    raw = change.get("raw", [np.zeros(4, np.float32).tobytes()])
    with pytest.raises(InvalidInputError, match=message):
        tensors.grpc_request(grpc_request(inputs=[tensor], raw_input_contents=raw))


def test_grpc_response_carries_raw_outputs_and_parameters():
    labels = np.array([[b"cat", b"dog"]], dtype=object)
    response = tensors.grpc_response(InferResponse(
        "m", "2", [Tensor("top_index", "INT32", np.array([[3, 1]], np.int32)),
                   Tensor("top_label", "BYTES", labels)], "7", {"truncated": 0}))
    assert response.model_version == "2" and response.id == "7"
    assert response.parameters["truncated"].int64_param == 0
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("top_index", "INT32", [1, 2]), ("top_label", "BYTES", [1, 2])]
    assert np.frombuffer(response.raw_output_contents[0], "<i4").tolist() == [3, 1]
    assert tensors.deserialize_bytes(response.raw_output_contents[1], 2, "x") == [b"cat", b"dog"]


# --- HTTP ------------------------------------------------------------------------------------


def test_http_json_tensors_flat_or_nested():
    body = json.dumps({"id": "a", "parameters": {"top_k": 2}, "inputs": [
        {"name": "pixels", "datatype": "FP32", "shape": [1, 2, 2], "data": [[1, 2], [3, 4.5]]},
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["héllo", "x"]}],
        "outputs": [{"name": "top_index", "parameters": {"binary_data": False}}]}).encode()
    parsed = tensors.http_request("m", "", body, None)
    assert parsed.id == "a" and parsed.parameters == {"top_k": 2}
    assert parsed.inputs[0].data.tolist() == [[[1.0, 2.0], [3.0, 4.5]]]
    assert parsed.inputs[1].data.tolist() == ["héllo".encode(), b"x"]
    assert tensors.binary_outputs(parsed) == set()


def test_http_binary_extension_reads_inputs_after_the_json_header():
    image = tensors.serialize_bytes([b"\xff\xd8jpeg"])
    pixels = np.ones((1, 2), np.float32).tobytes()
    header = json.dumps({"inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1, 1],
         "parameters": {"binary_data_size": len(image)}},
        {"name": "p", "datatype": "FP32", "shape": [1, 2],
         "parameters": {"binary_data_size": len(pixels)}}],
        "parameters": {"binary_data_output": True}}).encode()
    parsed = tensors.http_request("m", "1", header + image + pixels, str(len(header)))
    assert parsed.inputs[0].data[0, 0] == b"\xff\xd8jpeg" and parsed.inputs[0].parameters == {}
    assert parsed.inputs[1].data.tolist() == [[1.0, 1.0]]
    assert tensors.binary_outputs(parsed) == {"*"}, "no outputs named: all binary"
    for length, message in [(str(len(header) + 100), "at most the body's"),
                            ("x", "JSON header's size")]:
        with pytest.raises(InvalidInputError, match=message):
            tensors.http_request("m", "", header + image + pixels, length)
    with pytest.raises(InvalidInputError, match="4 bytes of binary data follow"):
        tensors.http_request("m", "", header + image + pixels + b"more", str(len(header)))
    with pytest.raises(InvalidInputError, match="binary_data_size is 8 but 0 bytes"):
        tensors.http_request("m", "", header + image, str(len(header)))


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "is not valid JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"inputs": []}', "non-empty 'inputs' array"),
    (b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [1, 2.5]}]}',
     "INT32 data must be integers"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}]}',
     r"shape \[3\] \(3 elements\) but its data holds 2"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [[1], [2, 3]]}]}',
     "ragged"),
    (b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}',
     "BYTES data must be strings"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}',
     "neither data nor binary_data_size"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}', "needs a 'shape' array"),
])
def test_http_malformed_requests_are_invalid_input(body, message):
    with pytest.raises(InvalidInputError, match=message):
        tensors.http_request("m", "", body, None)


def test_http_response_mixes_json_and_binary_outputs():
    response = InferResponse("m", "", [
        Tensor("top_label", "BYTES", np.array([[b"cat"]], dtype=object)),
        Tensor("top_score", "FP32", np.array([[0.5]], np.float32))], "7")
    body, length = tensors.http_response(response, {"top_score"})
    assert length is not None
    head = json.loads(body[:length])
    assert head["outputs"][0] == {"name": "top_label", "datatype": "BYTES", "shape": [1, 1],
                                  "data": ["cat"]}
    assert head["outputs"][1]["parameters"] == {"binary_data_size": 4}
    assert struct.unpack("<f", body[length:]) == (0.5,)
    plain, none = tensors.http_response(response, set())
    assert none is None and json.loads(plain)["outputs"][1]["data"] == [0.5]


# --- signatures ------------------------------------------------------------------------------

CLASSIFIER = Signature(signatures.IMAGE_CLASSIFIER, (4, 4), 6)


def infer_request(tensor: Tensor, outputs: tuple[str, ...] = (), **parameters: Any
                  ) -> InferRequest:
    return InferRequest("m", "", [tensor], [RequestedOutput(o) for o in outputs], "",
                        dict(parameters))


def image(*elements: bytes, shape: tuple[int, ...] | None = None) -> Tensor:
    data = np.empty(len(elements), dtype=object)
    data[:] = list(elements)
    return Tensor("image", "BYTES", data.reshape(shape or (len(elements), 1)))


def test_plan_checks_inputs_outputs_and_top_k():
    plan = signatures.plan(CLASSIFIER, infer_request(image(b"a", b"b"), top_k=99), "m")
    assert plan.images == [b"a", b"b"] and plan.top_k == 6, "top_k clamped to the classes"
    assert plan.outputs == ("top_index", "top_score", "top_label", "probabilities")
    pixels = Tensor("pixels", "FP32", np.zeros((1, 4, 4, 3), np.float32))
    plan = signatures.plan(CLASSIFIER, infer_request(pixels, ("top_label",)), "m")
    assert plan.pixels is not None and plan.outputs == ("top_label",) and plan.top_k == 5
    cases = [
        (infer_request(image(b"a", shape=(1,))), r"shape \[1\]; the model takes image"),
        (infer_request(Tensor("image", "FP32", np.zeros((1, 1), np.float32))), "datatype FP32"),
        (infer_request(Tensor("pixels", "FP32", np.zeros((1, 5, 4, 3), np.float32))),
         r"shape \[1, 5, 4, 3\]"),
        (infer_request(Tensor("pixels", "FP32", np.full((1, 4, 4, 3), np.nan, np.float32))),
         "NaN"),
        (infer_request(Tensor("text", "BYTES", image(b"a").data)), "has no input 'text'"),
        (infer_request(image(b"a"), ("logits",)), "has no output 'logits'"),
        (infer_request(image(b"a"), ("top_label", "top_label")), "requested twice"),
        (infer_request(image(b"a"), top_k=0), "top_k parameter must be a positive integer"),
        (infer_request(image(b"a"), top_k="3"), "top_k parameter"),
        (infer_request(image(shape=(0, 1))), "empty batch"),
    ]
    for request, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            signatures.plan(CLASSIFIER, request, "m")


def test_text_plans_decode_utf8():
    encoder = Signature(signatures.TEXT_ENCODER)
    texts = Tensor("text", "BYTES", np.array(["été".encode(), b"b"], dtype=object))
    assert signatures.plan(encoder, infer_request(texts), "m").texts == ["été", "b"]
    for element, message in [(b"\xff", "not UTF-8"), (b"  ", "empty or only whitespace")]:
        bad = Tensor("text", "BYTES", np.array([element], dtype=object))
        with pytest.raises(InvalidInputError, match=message):
            signatures.plan(encoder, infer_request(bad), "m")


def test_classification_outputs_rank_like_classify():
    probs = np.array([[0.1, 0.4, 0.05, 0.4, 0.05], [0.3, 0.2, 0.1, 0.25, 0.15]], np.float32)
    plan = signatures.Plan("image", outputs=("top_label", "top_index", "top_score"), top_k=3)
    label, index, score = signatures.classification_outputs(probs, ["a", "b", "c"], plan)
    assert index.data.tolist() == [[1, 3, 0], [0, 3, 1]], "ties keep class order"
    assert label.data.tolist() == [[b"b", b"3", b"a"], [b"a", b"3", b"b"]], "no label: index"
    np.testing.assert_allclose(score.data, [[0.4, 0.4, 0.1], [0.3, 0.25, 0.2]])


# --- the HTTP app ----------------------------------------------------------------------------


class StandIn:
    """A backend that answers from tables: the app's behaviour, no model."""

    def __init__(self) -> None:
        self.ready = True
        self.seen: list[InferRequest] = []

    def server_ready(self) -> bool:
        return self.ready

    def model_ready(self, name: str, version: str) -> bool:
        return name == "loaded"

    def model_metadata(self, name: str, version: str) -> ModelMetadata:
        if name == "busy":
            raise QueueFullError("busy: the request queue is full")
        if name not in ("loaded", "idle"):
            raise ModelNotFoundError(f"unknown model {name!r}")
        return CLASSIFIER.metadata(name, [version] if version else [])

    def infer(self, request: InferRequest, call: Call) -> InferResponse:
        self.seen.append(request)
        plan = signatures.plan(CLASSIFIER, request, request.model_name)
        probs = np.tile(np.linspace(0.1, 0.6, 6, dtype=np.float32), (plan.batch, 1))
        return InferResponse(request.model_name, request.model_version,
                             signatures.classification_outputs(probs, list("abcdef"), plan),
                             request.id)


@pytest.fixture(scope="module")
def http_app():
    backend = StandIn()
    api = OipHttp(backend, max_body_bytes=4096, threads=4)
    server = HttpServer(build_app(api.routes, token="s3cret"), "127.0.0.1", 0, grace_s=1)
    port = server.start()
    yield backend, f"http://127.0.0.1:{port}"
    server.stop()


def call(url: str, body: bytes | None = None, token: str | None = "s3cret",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_http_routes_health_metadata_and_errors(http_app):
    backend, base = http_app
    assert call(f"{base}/v2/health/live", token=None)[::2] == (200, b'{"live":true}')
    assert call(f"{base}/v2/health/ready", token=None)[0] == 200
    backend.ready = False
    assert call(f"{base}/v2/health/ready", token=None)[::2] == (400, b'{"ready":false}')
    backend.ready = True
    status, _, body = call(f"{base}/v2")
    assert status == 200 and json.loads(body)["extensions"] == ["binary_tensor_data",
                                                                "parameters"]
    meta = json.loads(call(f"{base}/v2/models/idle/versions/3")[2])
    assert meta["versions"] == ["3"] and meta["inputs"][1]["shape"] == [-1, 4, 4, 3]
    assert call(f"{base}/v2/models/loaded/ready")[0] == 200
    assert call(f"{base}/v2/models/idle/ready")[::2] == (400, b'{"name":"idle","ready":false}')
    for path, status, words in [("/v2/models/nope", 404, "unknown model 'nope'"),
                                ("/v2/models/busy", 429, "queue is full"),
                                ("/v3", 404, "Not Found")]:
        got, headers, body = call(base + path)
        assert got == status and words in json.loads(body)["error"], (path, body)
        assert headers["content-type"] == "application/json"


def test_http_token_is_required_except_for_probes(http_app):
    _, base = http_app
    for token, words in [(None, "missing bearer token"), ("wrong", "invalid bearer token")]:
        status, headers, body = call(f"{base}/v2/models/loaded", token=token)
        assert status == 401 and words in json.loads(body)["error"]
        assert headers["www-authenticate"] == "Bearer"


def test_http_infer_binary_json_gzip_and_limits(http_app):
    backend, base = http_app
    image = tensors.serialize_bytes([b"jpeg"])
    header = json.dumps({"id": "r1", "inputs": [{
        "name": "image", "datatype": "BYTES", "shape": [1, 1],
        "parameters": {"binary_data_size": len(image)}}],
        "outputs": [{"name": "top_index", "parameters": {"binary_data": True}},
                    {"name": "top_label"}], "parameters": {"top_k": 2}}).encode()
    url = f"{base}/v2/models/loaded/infer"
    length = {"Inference-Header-Content-Length": str(len(header))}
    status, headers, body = call(url, header + image, headers=length)
    assert status == 200 and backend.seen[-1].inputs[0].data[0, 0] == b"jpeg"
    split = int(headers["inference-header-content-length"])
    head = json.loads(body[:split])
    assert head["id"] == "r1" and head["model_name"] == "loaded"
    assert head["outputs"][1]["data"] == ["f", "e"], "top_label as JSON"
    assert np.frombuffer(body[split:], "<i4").tolist() == [5, 4], "top_index as binary"
    packed = gzip.compress(header + image)
    status, _, body = call(url, packed, headers={**length, "Content-Encoding": "gzip"})
    assert status == 200 and backend.seen[-1].inputs[0].data[0, 0] == b"jpeg"
    too_big = header + b" " * 5000
    assert call(url, too_big)[0] == 413, "over --max-message-mb"
    bomb = gzip.compress(b" " * 100_000)
    assert call(url, bomb, headers={"Content-Encoding": "gzip"})[0] == 413
    status, _, body = call(url, b'{"inputs": [{"name": "image", "datatype": "BYTES", '
                                b'"shape": [1, 2], "data": ["a", "b"]}]}')
    assert status == 400 and "shape [1, 2]" in json.loads(body)["error"]
    assert call(url, token=None)[0] == 401
