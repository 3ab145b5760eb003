"""The gRPC server end to end: a real `zoo serve` process on a free port, the generated
stubs, every ModelService and InferenceService RPC, their errors, and concurrency."""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import TINY
from tests.serving import (
    ServerProcess,
    Stubs,
    distinct_images,
    encode,
    huge_png_header,
    mirror_env,
    spec,
)
from zoo_api.v1 import common_pb2, inference_pb2, models_pb2

pytestmark = pytest.mark.slow
MAX_MESSAGE_MB = 4


@pytest.fixture(scope="module")
def served(pretrained_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    env = mirror_env(pretrained_tiny, root)
    server = ServerProcess(root / "home", env, "--metrics-port", "0", "--max-batch-size", "16",
                           "--max-message-mb", str(MAX_MESSAGE_MB), "--max-image-pixels",
                           "4000000", "--log-level", "debug")
    stubs = Stubs(server.target)
    try:
        yield server, stubs, root
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-20:])


@pytest.fixture()
def stubs(served) -> Stubs:
    return served[1]


def check_alive(stubs: Stubs) -> None:
    """The server still answers, and still classifies."""
    health = health_pb2_grpc.HealthStub(stubs.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    image = distinct_images(1, seed=99)[0]
    result = stubs.inference.Classify(inference_pb2.ClassifyRequest(model=spec(), images=[image]))
    assert len(result.results) == 1


def rpc_error(call, request, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        response = call(request, *args, **kwargs)
        if hasattr(response, "__iter__") and not hasattr(response, "DESCRIPTOR"):
            list(response)
    return info.value


# --- health, reflection ----------------------------------------------------------------------


def test_health_and_reflection(stubs):
    health = health_pb2_grpc.HealthStub(stubs.channel)
    for service in ("", "zoo.v1.InferenceService", "zoo.v1.FineTuneService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)
    answers = list(reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"zoo.v1.ModelService", "zoo.v1.InferenceService", "zoo.v1.FineTuneService",
            "grpc.health.v1.Health"} <= names
    answers = list(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="zoo.v1.InferenceService")])))
    assert answers[0].file_descriptor_response.file_descriptor_proto


# --- ModelService ----------------------------------------------------------------------------


def test_list_models_filters_by_pattern_and_task(stubs):
    names = [m.name for m in stubs.models.ListModels(
        models_pb2.ListModelsRequest(pattern="mobilenet_v2_035_*")).models]
    assert names == sorted(f"mobilenet_v2_035_{px}" for px in (96, 128, 160, 192, 224))
    text = stubs.models.ListModels(models_pb2.ListModelsRequest(task=common_pb2.TEXT_EMBEDDING))
    assert [m.name for m in text.models] == ["minilm_l6_v2"]
    everything = stubs.models.ListModels(models_pb2.ListModelsRequest()).models
    assert len(everything) > 50 and all(not m.labels for m in everything)
    assert rpc_error(stubs.models.ListModels, models_pb2.ListModelsRequest(pattern="x" * 300)
                     ).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_has_labels_and_cache_state(stubs):
    info = stubs.models.GetModel(models_pb2.GetModelRequest(model=spec())).model
    assert info.origin == models_pb2.ModelInfo.REGISTRY and info.task == common_pb2.IMAGE_CLASSIFICATION
    assert list(info.input_size) == [96, 96] and info.preprocessing == "tf"
    assert info.num_classes == 1000 and len(info.labels) == 1000 and info.params > 0
    vgg = stubs.models.GetModel(models_pb2.GetModelRequest(model=spec("vgg16"))).model
    assert not vgg.cached and not vgg.loaded and vgg.top1 > 70
    error = rpc_error(stubs.models.GetModel, models_pb2.GetModelRequest(model=spec("resnet5")))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "resnet5" in error.details()


def test_fetch_model_says_paths_relative_to_the_home(stubs):
    messages = list(stubs.models.FetchModel(models_pb2.FetchModelRequest(model=spec(), no_top=True)))
    assert not os.path.isabs(messages[-1].path), messages[-1].path
    assert messages[-1].path.startswith("keras/") and messages[-1].path.endswith(".h5")


def test_fetch_model_streams_progress_then_done(stubs):
    messages = list(stubs.models.FetchModel(models_pb2.FetchModelRequest(model=spec(), no_top=True)))
    assert messages[-1].done and messages[-1].path.endswith(".h5")
    assert messages[-1].bytes_done == messages[-1].bytes_total > 0
    assert all(not m.done for m in messages[:-1])
    for name, code in [("nope", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT),
                       ("../../etc/passwd", grpc.StatusCode.INVALID_ARGUMENT)]:
        error = rpc_error(stubs.models.FetchModel, models_pb2.FetchModelRequest(model=spec(name)))
        assert error.code() == code, (name, error.details())


def test_load_and_unload(stubs):
    loaded = stubs.models.LoadModel(models_pb2.LoadModelRequest(model=spec()))
    assert loaded.model.loaded and loaded.model.name == TINY
    again = stubs.models.LoadModel(models_pb2.LoadModelRequest(model=spec()))
    assert again.seconds == 0
    assert stubs.models.UnloadModel(models_pb2.UnloadModelRequest(model=spec())).was_loaded
    assert not stubs.models.GetModel(models_pb2.GetModelRequest(model=spec())).model.loaded
    assert not stubs.models.UnloadModel(models_pb2.UnloadModelRequest(model=spec())).was_loaded
    error = rpc_error(stubs.models.UnloadModel, models_pb2.UnloadModelRequest(model=spec("nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    check_alive(stubs)  # loads again on first use


# --- Classify --------------------------------------------------------------------------------


def in_process_probabilities(images: list[bytes], root: Path, monkeypatch) -> np.ndarray:
    """The same model, loaded in this process from the same files, on the same bytes."""
    from zoo.vision.classifier import ImageClassifier
    from zoo.vision.images import decode

    monkeypatch.setenv("ZOO_MANIFEST", str(root / "manifest.json"))
    monkeypatch.setenv("ZOO_KERAS_MIRROR", str(root / "mirror"))
    clf = ImageClassifier.load(TINY)
    return clf.probabilities(np.stack([decode(b, clf.size) for b in images]))


def test_classify_matches_the_library(served, stubs, monkeypatch):
    images = distinct_images(4)
    response = stubs.inference.Classify(inference_pb2.ClassifyRequest(model=spec(), images=images))
    assert response.model.name == TINY and len(response.results) == 4
    assert all(len(r.predictions) == 5 for r in response.results)  # top_k 0 means 5
    expected = in_process_probabilities(images, served[2], monkeypatch)
    for result, probs in zip(response.results, expected, strict=True):
        assert [p.index for p in result.predictions] == list(np.argsort(-probs)[:5])
        np.testing.assert_allclose([p.score for p in result.predictions],
                                   np.sort(probs)[::-1][:5], rtol=1e-4, atol=1e-6)
        assert result.predictions[0].label == f"class_{result.predictions[0].index}"
    top3 = stubs.inference.Classify(inference_pb2.ClassifyRequest(model=spec(), images=images[:1],
                                                                  top_k=3))
    assert len(top3.results[0].predictions) == 3
    # A top_k past the number of classes is clamped to it, as decode_predictions does.
    everything = stubs.inference.Classify(inference_pb2.ClassifyRequest(
        model=spec(), images=images[:1], top_k=1001))
    assert len(everything.results[0].predictions) == 1000


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("empty batch", grpc.StatusCode.INVALID_ARGUMENT, "non-empty"),
        ("empty image", grpc.StatusCode.INVALID_ARGUMENT, r"images\[1\] is empty"),
        ("corrupt image", grpc.StatusCode.INVALID_ARGUMENT, r"images\[1\]: not a readable image"),
        ("TIFF image", grpc.StatusCode.INVALID_ARGUMENT, r"images\[0\]: not a readable image"),
        ("EPS image", grpc.StatusCode.INVALID_ARGUMENT, r"images\[0\]: .*TIFF, PPM or EPS"),
        ("truncated image", grpc.StatusCode.INVALID_ARGUMENT, r"images\[1\]"),
        ("20000x20000 image", grpc.StatusCode.INVALID_ARGUMENT, "over the limit"),
        ("over the pixel limit", grpc.StatusCode.INVALID_ARGUMENT, "over the limit"),
        ("over the message limit", grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
        ("top_k negative", grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
        ("unknown model", grpc.StatusCode.NOT_FOUND, "unknown model 'no_such_model'"),
        ("unknown version", grpc.StatusCode.NOT_FOUND, ""),
        ("path as name", grpc.StatusCode.INVALID_ARGUMENT, "not a model name"),
        ("text model", grpc.StatusCode.INVALID_ARGUMENT, "text-embedding model"),
    ],
)
def test_classify_errors_leave_the_server_answering(stubs, case, code, message):
    good = distinct_images(1)[0]
    png = encode(np.zeros((64, 64, 3), np.uint8))
    requests = {
        "empty batch": dict(images=[]),
        "empty image": dict(images=[good, b""]),
        "corrupt image": dict(images=[good, b"this is not an image"]),
        "TIFF image": dict(images=[encode(np.zeros((64, 64, 3), np.uint8), "TIFF")]),
        "EPS image": dict(images=[encode(np.zeros((64, 64, 3), np.uint8), "EPS")]),
        "truncated image": dict(images=[good, png[: len(png) // 2]]),
        "20000x20000 image": dict(images=[huge_png_header()]),
        "over the pixel limit": dict(images=[encode(np.zeros((2100, 2000, 3), np.uint8))]),
        "over the message limit": dict(images=[good + b"\0" * (MAX_MESSAGE_MB * 2**20)]),
        "top_k negative": dict(images=[good], top_k=-1),
        "unknown model": dict(model=spec("no_such_model"), images=[good]),
        "unknown version": dict(model=spec("digits-never-trained", 3), images=[good]),
        "path as name": dict(model=spec("../../../etc"), images=[good]),
        "text model": dict(model=spec("minilm_l6_v2"), images=[good]),
    }
    request = inference_pb2.ClassifyRequest(**{"model": spec(), **requests[case]})
    error = rpc_error(stubs.inference.Classify, request)
    assert error.code() == code, error.details()
    assert re.search(message, error.details()), error.details()
    check_alive(stubs)


def test_text_that_is_not_utf8_is_invalid_argument(stubs):
    for method, message in [
        ("/zoo.v1.InferenceService/ClassifyText",
         inference_pb2.ClassifyTextRequest(model=spec("clf"), texts=["ok"])),
        ("/zoo.v1.InferenceService/Embed",
         inference_pb2.EmbedRequest(model=spec("minilm_l6_v2"), texts=["ok"])),
        ("/zoo.v1.InferenceService/Classify", inference_pb2.ClassifyRequest(model=spec("ok"))),
    ]:
        raw = message.SerializeToString().replace(b"ok", b"\xff\xfe")
        error = rpc_error(stubs.raw(method), raw)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "UTF-8" in error.details()
    error = rpc_error(stubs.raw("/zoo.v1.ModelService/GetModel"), b"\x0a\x05ab")  # truncated
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    check_alive(stubs)


def test_deadline_is_honoured(stubs):
    images = distinct_images(64, seed=3)
    error = rpc_error(stubs.inference.Classify,
                      inference_pb2.ClassifyRequest(model=spec(), images=images), timeout=0.005)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    check_alive(stubs)


def test_classify_stream_answers_each_request_with_its_own_result_or_error(stubs):
    images = distinct_images(12, seed=5)
    requests = []
    for i, image in enumerate(images):
        bad = i % 4 == 1
        requests.append(inference_pb2.ClassifyStreamRequest(
            request_id=f"r{i}", model=spec("nope" if i == 6 else TINY),
            image=b"garbage" if bad else image, top_k=2))
    direct = stubs.inference.Classify(inference_pb2.ClassifyRequest(model=spec(), images=images,
                                                                    top_k=2))
    answers = {r.request_id: r for r in stubs.inference.ClassifyStream(iter(requests))}
    assert set(answers) == {f"r{i}" for i in range(12)}
    for i in range(12):
        answer = answers[f"r{i}"]
        if i % 4 == 1:
            assert answer.error_code == "INVALID_ARGUMENT" and "not a readable image" in answer.error_message
        elif i == 6:
            assert answer.error_code == "NOT_FOUND" and not answer.predictions
        else:
            assert not answer.error_code
            assert [p.index for p in answer.predictions] == [
                p.index for p in direct.results[i].predictions]


# --- Embed, ClassifyText ---------------------------------------------------------------------


def test_embed_images_and_texts(stubs):
    images = distinct_images(3)
    response = stubs.inference.Embed(inference_pb2.EmbedRequest(model=spec(), images=images))
    vectors = np.array([e.values for e in response.embeddings])
    assert response.dimension == vectors.shape[1] == 1280 and vectors.shape[0] == 3
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    raw = stubs.inference.Embed(inference_pb2.EmbedRequest(model=spec(), images=images[:1],
                                                           no_normalize=True))
    assert np.linalg.norm(raw.embeddings[0].values) != pytest.approx(1.0)
    texts = stubs.inference.Embed(inference_pb2.EmbedRequest(
        model=spec("minilm_l6_v2"), texts=["a cat sits on the mat", "a kitten on a rug",
                                           "interest rates rose again"]))
    t = np.array([e.values for e in texts.embeddings])
    assert texts.dimension == 384 and t[0] @ t[1] > t[0] @ t[2]
    for request, message in [
        (inference_pb2.EmbedRequest(model=spec()), "either texts or images"),
        (inference_pb2.EmbedRequest(model=spec(), texts=["x"], images=images[:1]), "exactly one"),
        (inference_pb2.EmbedRequest(model=spec(), texts=["x"]), "image model"),
        (inference_pb2.EmbedRequest(model=spec("minilm_l6_v2"), images=images[:1]), "text model"),
        (inference_pb2.EmbedRequest(model=spec("minilm_l6_v2"), texts=["ok", "  "]), r"texts\[1\]"),
    ]:
        error = rpc_error(stubs.inference.Embed, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert re.search(message, error.details()), error.details()


def test_classify_text_needs_a_fine_tuned_text_classifier(stubs):
    for name, code, message in [
        ("minilm_l6_v2", grpc.StatusCode.INVALID_ARGUMENT, "fine-tune a classifier"),
        (TINY, grpc.StatusCode.INVALID_ARGUMENT, "not a fine-tuned text classifier"),
        ("nope", grpc.StatusCode.NOT_FOUND, "nope"),
    ]:
        error = rpc_error(stubs.inference.ClassifyText,
                          inference_pb2.ClassifyTextRequest(model=spec(name), texts=["hello"]))
        assert error.code() == code and message in error.details()


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_clients_get_their_own_answers_and_batches_form(served, stubs, monkeypatch):
    server = served[0]
    images = distinct_images(48, seed=11)
    expected = in_process_probabilities(images, served[2], monkeypatch)
    barrier = threading.Barrier(16)

    def client(worker: int) -> list[tuple[int, list[int]]]:
        answers = []
        barrier.wait()
        for i in range(worker, len(images), 16):
            result = stubs.inference.Classify(inference_pb2.ClassifyRequest(
                model=spec(), images=[images[i]], top_k=3)).results[0]
            answers.append((i, [p.index for p in result.predictions]))
        return answers

    with ThreadPoolExecutor(16) as pool:
        answers = [a for part in pool.map(client, range(16)) for a in part]
    assert len(answers) == len(images)
    for i, indices in answers:
        assert indices == list(np.argsort(-expected[i])[:3]), f"image {i} got another's answer"
    metrics = server.metrics()
    pattern = r'zoo_batch_size_bucket\{le="([0-9.]+)",model="' + TINY + r'"\} ([0-9.]+)'
    buckets = {float(le): float(n) for le, n in re.findall(pattern, metrics)}
    assert buckets and buckets[1.0] < max(buckets.values()), "no batch had more than one image"
    assert re.search(r'zoo_requests_total\{code="OK",method="Classify"\} [1-9]', metrics)
    assert "zoo_queue_depth" in metrics and "zoo_jobs" in metrics
