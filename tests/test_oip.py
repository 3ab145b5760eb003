"""The Open Inference Protocol through real, unchanged clients: tritonclient (gRPC, and HTTP
with binary and JSON tensors) and KServe's InferenceGRPCClient and InferenceRESTClient,
against a real `zoo serve --http-port` serving the tiny model.

The clients pin protobuf < 7, so they live in their own venv (.venv-oip, made by `make
test`) and run as subprocesses (tests/oip_client.py); each client runs every call of a plan
once per server, and the tests below assert on what it observed. Answers are compared
with zoo.v1's Classify on the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import ROOT, TINY
from tests.serving import ServerProcess, Stubs, mirror_env, spec
from zoo_api.v1 import inference_pb2

pytestmark = pytest.mark.slow
OIP_PYTHON = ROOT / ".venv-oip" / "bin" / "python"
CLIENT = ROOT / "tests" / "oip_client.py"
GRPC_CLIENTS = ("triton-grpc", "kserve-grpc")
HTTP_CLIENTS = ("triton-http", "kserve-rest")
CLIENTS = GRPC_CLIENTS + HTTP_CLIENTS
TOKEN = "oip-token"
TEXTS = ["a cat sits on the mat", "stock markets fell sharply"]
NOT_FOUND = {"triton-grpc": "StatusCode.NOT_FOUND", "kserve-grpc": "StatusCode.NOT_FOUND",
             "triton-http": "404", "kserve-rest": "404"}
INVALID = {"triton-grpc": "StatusCode.INVALID_ARGUMENT",
           "kserve-grpc": "StatusCode.INVALID_ARGUMENT", "triton-http": "400",
           "kserve-rest": "400"}
UNAUTHENTICATED = {"triton-grpc": "StatusCode.UNAUTHENTICATED",
                   "kserve-grpc": "StatusCode.UNAUTHENTICATED", "triton-http": "401",
                   "kserve-rest": "401"}

if not OIP_PYTHON.exists():
    pytest.skip("the OIP client venv (.venv-oip: tritonclient, kserve) is missing; `make test` "
                "or `make oip-clients` makes it", allow_module_level=True)


def drive(kind: str, url: str, ops: list[dict[str, Any]], *, token: str | None = None,
          ca: Path | None = None) -> list[dict[str, Any]]:
    plan = {"ops": ops, "token": token, "ca": str(ca) if ca else None}
    run = subprocess.run([str(OIP_PYTHON), str(CLIENT), kind, url], input=json.dumps(plan),
                         capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, f"{kind} failed:\n{run.stderr[-3000:]}"
    results = json.loads(run.stdout)
    assert len(results) == len(ops)
    return results


def jpegs(folder: Path, n: int = 3) -> list[Path]:
    """JPEG crops of scikit-image's sample photographs."""
    from PIL import Image

    from tests.keras_weights import photo_batch

    paths = []
    for i, crop in enumerate(photo_batch((120, 140), n=n, seed=3).astype(np.uint8)):
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "JPEG", quality=90)
        paths.append(folder / f"photo{i}.jpg")
        paths[-1].write_bytes(buf.getvalue())
    return paths


def image_input(paths: list[Path]) -> dict[str, Any]:
    return {"name": "image", "datatype": "BYTES", "shape": [len(paths), 1],
            "file": [str(p) for p in paths]}


@pytest.fixture(scope="module")
def served(pretrained_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("oip")
    server = ServerProcess(root / "home", mirror_env(pretrained_tiny, root), "--http-port", "0",
                           "--preload", TINY, "--metrics-port", "0")
    stubs = Stubs(server.target)
    try:
        yield server, stubs, root
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-20:])
        assert not any(e.get("level") == "error" for e in server.lines), server.lines
        assert [e.get("event") for e in server.lines][-2:] == ["shutting_down", "stopped"]


@pytest.fixture(scope="module")
def data(served) -> dict[str, Any]:
    """The inputs, zoo.v1's answers on them, and every client's observations."""
    server, stubs, root = served
    photos = jpegs(root)
    from zoo.vision.images import decode

    pixels = np.stack([decode(p.read_bytes(), (96, 96)) for p in photos]).astype(np.float32)
    np.save(root / "pixels.npy", pixels)
    np.save(root / "small.npy", pixels[:, :32, :32])
    (root / "bad.jpg").write_bytes(b"this is not an image")
    batches_before = batch_count(server)
    reply = stubs.inference.Classify(inference_pb2.ClassifyRequest(
        model=spec(), images=[p.read_bytes() for p in photos], top_k=5))
    expected = [[(p.index, p.label, p.score) for p in r.predictions] for r in reply.results]

    pixels_input = {"name": "pixels", "datatype": "FP32", "shape": list(pixels.shape),
                    "npy": str(root / "pixels.npy")}
    ops: dict[str, dict[str, Any]] = {
        "live": {"op": "live"},
        "ready": {"op": "ready"},
        "model_ready": {"op": "model_ready", "model": TINY},
        "not_loaded_ready": {"op": "model_ready", "model": "mobilenet_v2"},
        "unknown_ready": {"op": "model_ready", "model": "no_such_model"},
        "server_metadata": {"op": "server_metadata"},
        "model_metadata": {"op": "model_metadata", "model": TINY},
        "unknown_metadata": {"op": "model_metadata", "model": "no_such_model"},
        "jpeg": {"op": "infer", "model": TINY, "input": image_input(photos), "id": "req-7"},
        "pixels": {"op": "infer", "model": TINY, "input": pixels_input,
                   "outputs": ["top_index", "top_score"]},
        "pixels_json": {"op": "infer", "model": TINY, "input": pixels_input, "binary": False,
                        "outputs": ["top_index", "top_label"]},
        "only_label": {"op": "infer", "model": TINY, "input": image_input(photos[:1]),
                       "outputs": ["top_label"], "parameters": {"top_k": 3}},
        "clamped": {"op": "infer", "model": TINY, "input": image_input(photos[:1]),
                    "outputs": ["top_index", "probabilities"], "parameters": {"top_k": 5000}},
        "unknown_model": {"op": "infer", "model": "no_such_model",
                          "input": image_input(photos[:1])},
        "wrong_datatype": {"op": "infer", "model": TINY, "input": {
            "name": "image", "datatype": "INT32", "shape": [1, 1], "data": [7]}},
        "wrong_shape": {"op": "infer", "model": TINY, "input": {
            **image_input(photos[:2]), "shape": [1, 2]}},
        "wrong_size": {"op": "infer", "model": TINY, "input": {
            **pixels_input, "shape": [3, 32, 32, 3], "npy": str(root / "small.npy")}},
        "bad_image": {"op": "infer", "model": TINY, "input": image_input([root / "bad.jpg"])},
        "unknown_output": {"op": "infer", "model": TINY, "input": image_input(photos[:1]),
                           "outputs": ["logits"]},
        "text": {"op": "infer", "model": "minilm_l6_v2", "input": {
            "name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}},
        "text_metadata": {"op": "model_metadata", "model": "minilm_l6_v2"},
    }
    metadata_ops = {"server_metadata", "model_metadata", "unknown_metadata", "text_metadata"}
    observed: dict[str, dict[str, Any]] = {}
    for kind in CLIENTS:
        url = f"127.0.0.1:{server.event('serving')['http_port'] if kind in HTTP_CLIENTS else server.port}"
        names = [k for k in ops if kind.startswith("triton") or k not in metadata_ops]
        if kind.startswith("kserve"):  # their JSON path: BYTES that are not UTF-8 go binary
            names = [k for k in names if k != "pixels_json"] + ["pixels_json"]
        results = drive(kind, url, [ops[k] for k in names])
        observed[kind] = dict(zip(names, results, strict=True))
    batches = batch_count(server) - batches_before
    embedded = stubs.inference.Embed(inference_pb2.EmbedRequest(model=spec("minilm_l6_v2"),
                                                                 texts=TEXTS))
    return {"expected": expected, "observed": observed, "photos": photos, "batches": batches,
            "embeddings": np.array([e.values for e in embedded.embeddings])}


def batch_count(server: ServerProcess) -> float:
    """Compiled calls the tiny model's batcher has made (from /metrics)."""
    found = re.findall(rf'^zoo_batch_size_count\{{model="{TINY}"\}} ([0-9.e+]+)$',
                       server.metrics(), re.M)
    return float(found[0]) if found else 0.0


def value(observed: dict[str, Any], key: str) -> Any:
    result = observed[key]
    assert "value" in result, f"{key}: {result}"
    return result["value"]


def error(observed: dict[str, Any], key: str) -> dict[str, str]:
    result = observed[key]
    assert "error" in result, f"{key} should have failed: {result}"
    return result["error"]


# --- health and metadata ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_liveness_and_readiness(data, kind):
    seen = data["observed"][kind]
    assert value(seen, "live") is True and value(seen, "ready") is True
    assert value(seen, "model_ready") is True, "preloaded"
    assert value(seen, "not_loaded_ready") is False, "a registry model not loaded yet"
    assert value(seen, "unknown_ready") is False


@pytest.mark.parametrize("kind", ["triton-grpc", "triton-http"])
def test_server_and_model_metadata(data, kind):
    seen = data["observed"][kind]
    server = value(seen, "server_metadata")
    assert server["name"] == "zoo" and server["version"]
    assert "binary_tensor_data" in server["extensions"]
    model = value(seen, "model_metadata")
    assert model["name"] == TINY and model["platform"] == "tensorflow_keras"
    assert model.get("versions", []) == []  # registry models are not versioned
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in model["inputs"]] == [
        ("image", "BYTES", [-1, 1]), ("pixels", "FP32", [-1, 96, 96, 3])]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in model["outputs"]] == [
        ("top_index", "INT32", [-1, -1]), ("top_score", "FP32", [-1, -1]),
        ("top_label", "BYTES", [-1, -1]), ("probabilities", "FP32", [-1, 1000])]
    missing = error(seen, "unknown_metadata")
    assert missing["status"] == NOT_FOUND[kind] and "no_such_model" in missing["message"]


# --- inference -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_jpeg_as_bytes_gives_classify_top5(data, kind):
    answer = value(data["observed"][kind], "jpeg")
    assert answer["model_name"] == TINY and answer["id"] == "req-7"
    outputs = answer["outputs"]
    assert sorted(outputs) == ["probabilities", "top_index", "top_label", "top_score"]
    expected = data["expected"]
    assert outputs["top_index"]["shape"] == [3, 5] and outputs["probabilities"]["shape"] == [3, 1000]
    index = np.reshape(outputs["top_index"]["data"], (3, 5))
    labels = np.reshape(outputs["top_label"]["data"], (3, 5))
    scores = np.reshape(outputs["top_score"]["data"], (3, 5))
    probs = np.reshape(outputs["probabilities"]["data"], (3, 1000))
    for row, want in enumerate(expected):
        assert index[row].tolist() == [i for i, _, _ in want]
        assert labels[row].tolist() == [label for _, label, _ in want]
        np.testing.assert_allclose(scores[row], [s for _, _, s in want], rtol=1e-6)
        np.testing.assert_allclose(probs[row][index[row]], scores[row], rtol=1e-6)


@pytest.mark.parametrize(("kind", "key"), [("triton-grpc", "pixels"), ("triton-http", "pixels"),
                                           ("triton-http", "pixels_json"),
                                           ("kserve-grpc", "pixels"),
                                           ("kserve-rest", "pixels_json")])
def test_fp32_pixels_give_the_same_answer(data, kind, key):
    """Pixels decoded as the server decodes the JPEG: the same top-5 as sending the JPEG;
    only the requested outputs come back."""
    outputs = value(data["observed"][kind], key)["outputs"]
    wanted = ["top_index", "top_label"] if key == "pixels_json" else ["top_index", "top_score"]
    assert sorted(outputs) == sorted(wanted)
    index = np.reshape(outputs["top_index"]["data"], (3, 5))
    for row, want in enumerate(data["expected"]):
        assert index[row].tolist() == [i for i, _, _ in want]
    if "top_score" in outputs:
        np.testing.assert_allclose(np.reshape(outputs["top_score"]["data"], (3, 5))[:, 0],
                                   [want[0][2] for want in data["expected"]], rtol=1e-5)


@pytest.mark.parametrize("kind", CLIENTS)
def test_requested_outputs_and_top_k(data, kind):
    seen = data["observed"][kind]
    only = value(seen, "only_label")["outputs"]
    assert list(only) == ["top_label"] and only["top_label"]["shape"] == [1, 3]
    assert only["top_label"]["data"] == [label for _, label, _ in data["expected"][0][:3]]
    clamped = value(seen, "clamped")["outputs"]
    assert clamped["top_index"]["shape"] == [1, 1000], "top_k is clamped to the classes"
    assert sorted(clamped["top_index"]["data"]) == list(range(1000))


@pytest.mark.parametrize("kind", CLIENTS)
def test_errors_map_to_the_protocols_codes(data, kind):
    seen = data["observed"][kind]
    missing = error(seen, "unknown_model")
    assert missing["status"] == NOT_FOUND[kind] and "no_such_model" in missing["message"]
    for key, words in [("wrong_datatype", "datatype INT32"), ("wrong_shape", "shape [1, 2]"),
                       ("wrong_size", "shape [3, 32, 32, 3]"),
                       ("bad_image", "not a readable image"), ("unknown_output", "'logits'")]:
        failure = error(seen, key)
        assert failure["status"] == INVALID[kind], (key, failure)
        assert words in failure["message"], (key, failure)


@pytest.mark.parametrize("kind", CLIENTS)
def test_text_encoder_gives_embed_vectors(data, kind):
    seen = data["observed"][kind]
    answer = value(seen, "text")
    assert list(answer["outputs"]) == ["embedding"]
    vectors = answer["outputs"]["embedding"]
    assert vectors["shape"] == [2, 384]
    np.testing.assert_allclose(np.reshape(vectors["data"], (2, 384)), data["embeddings"],
                               atol=1e-4)
    if kind.startswith("triton"):  # the dimension shows once the model has answered
        meta = value(seen, "text_metadata")
        assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("text", "BYTES")]
        assert [int(d) for d in meta["outputs"][0]["shape"]] == [-1, 384]


def test_both_protocols_share_the_models_batcher(served, data):
    """Every OIP inference above ran through the batcher zoo.v1's Classify uses (its compiled
    calls count under the one model label), and the server lists the OIP service."""
    server, stubs, _ = served
    oip_batches = sum(1 for kind in CLIENTS for key in ("jpeg", "pixels", "pixels_json",
                                                        "only_label", "clamped")
                      if "value" in data["observed"][kind].get(key, {}))
    assert data["batches"] >= 1 + oip_batches  # Classify's call, then at least one each
    health = health_pb2_grpc.HealthStub(stubs.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)
    answers = list(reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert "inference.GRPCInferenceService" in {
        s.name for s in answers[0].list_services_response.service}
    metrics = server.metrics()
    assert 'zoo_requests_total{code="OK",method="ModelInfer"}' in metrics
    assert 'zoo_requests_total{code="200",method="http.ModelInfer"}' in metrics


# --- auth and TLS ----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_token_and_tls_on_both_protocols(pretrained_tiny, tmp_path):
    from tests.test_server_cli import self_signed

    cert, key = self_signed(tmp_path)
    env = {**mirror_env(pretrained_tiny, tmp_path), "ZOO_TOKEN": TOKEN}
    server = ServerProcess(tmp_path / "home", env, "--http-port", "0", "--tls-cert", str(cert),
                           "--tls-key", str(key))
    photo = jpegs(tmp_path, 1)
    calls = [{"op": "live"}, {"op": "ready"}, {"op": "model_ready", "model": TINY},
             {"op": "infer", "model": TINY, "input": image_input(photo),
              "outputs": ["top_index"]}]
    ops = ([{**op, "token": None} for op in calls] + [{**calls[3], "token": "wrong"}]
           + [{**op, "token": TOKEN} for op in calls])
    try:
        for kind in CLIENTS:
            port = server.event("serving")["http_port"] if kind in HTTP_CLIENTS else server.port
            url = f"127.0.0.1:{port}"  # the certificate names IP 127.0.0.1
            seen = drive(kind, url, ops, ca=cert)
            assert [r.get("value") for r in seen[:2]] == [True, True], "probes stay open"
            for result in seen[2:5]:
                if "value" in result:  # the HTTP clients' is_model_ready is 200 or not
                    assert result["value"] is False
                    continue
                assert result["error"]["status"] == UNAUTHENTICATED[kind], (kind, result)
                assert "bearer token" in result["error"]["message"]
            assert "invalid bearer token" in seen[4]["error"]["message"]
            assert value(dict(enumerate(seen)), 8)["outputs"]["top_index"]["shape"] == [1, 5]
        busy = subprocess.run([sys.executable, "-m", "zoo.cli.main", "serve", "--port", "0",
                               "--http-port", str(server.event("serving")["http_port"]),
                               "--home", str(tmp_path / "other")],
                              capture_output=True, text=True, env=env, timeout=120)
        assert busy.returncode == 1 and "cannot listen" in busy.stderr
        assert "--http-port" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
    finally:
        assert server.stop() == 0, "".join(server.raw[-20:])
