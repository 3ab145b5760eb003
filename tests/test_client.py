"""zoo_client against a real `zoo serve` process: every method, errors, retries, deadlines,
sync and async, and a fresh virtual environment that has only the client installed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo_client
from tests.conftest import PYTHONPATH, ROOT, TINY
from tests.digits import write_digits
from zoo_client import AsyncZooClient, ZooClient

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zoo.cli.main", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--home", str(home)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )


@pytest.fixture(scope="module")
def server(pretrained_tiny, tmp_path_factory):
    """A `zoo serve` process with TINY's weights behind a folder mirror; yields its target."""
    from tests.keras_weights import write_mirror

    root = tmp_path_factory.mktemp("served")
    manifest = write_mirror(root / "mirror", pretrained_tiny, root / "manifest.json")
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "ZOO_MANIFEST": str(manifest),
           "ZOO_KERAS_MIRROR": str(root / "mirror"), "HF_HOME": str(root / "hf")}
    port = free_port()
    process = start_server(root / "home", env, port)
    target = f"127.0.0.1:{port}"
    try:
        with ZooClient(target) as zoo:
            zoo.wait_until_serving(timeout=120)
            zoo.load_model(TINY)  # warm: tests below time requests, not the first load
        yield target
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture()
def digit_images(tmp_path: Path) -> list[Path]:
    data = write_digits(tmp_path / "digits", per_class=1, start=170, size=96)
    return [data / str(d) / "000.png" for d in range(3)]


def test_list_and_get_model_return_dataclasses(server) -> None:
    with ZooClient(server) as zoo:
        models = zoo.list_models("mobilenet_v2_035*")
        assert sorted(m.name for m in models) == sorted(
            f"mobilenet_v2_035_{px}" for px in (96, 128, 160, 192, 224))
        info = zoo.get_model(TINY)
        assert isinstance(info, zoo_client.ModelInfo) and info.origin == "registry"
        assert info.task == "image-classification" and info.input_size == (96, 96)
        assert len(info.labels) == 1000 and info.num_classes == 1000
        assert info.source == "keras" and {f.name for f in info.files} == {"top", "notop"}
        assert all(isinstance(f, zoo_client.WeightFile) and f.origin for f in info.files)
        with pytest.raises(AttributeError):
            info.name = "changed"  # type: ignore[misc]
        text = zoo.list_models(task="text-embedding")
        assert [m.name for m in text] == ["minilm_l6_v2"]


def test_classify_accepts_paths_bytes_pil_and_numpy(server, digit_images) -> None:
    path = digit_images[0]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    with ZooClient(server) as zoo:
        results = zoo.classify(TINY, [path, str(path), path.read_bytes(),
                                      Image.open(path), pixels], top_k=3)
    assert len(results) == 5 and all(len(r) == 3 for r in results)
    assert all(isinstance(p, zoo_client.Prediction) for p in results[0])
    labels = {tuple(p.index for p in r) for r in results}
    assert len(labels) == 1, "the same image, however it is sent, gets the same answer"


def test_errors_map_to_exceptions_that_keep_the_code(server, digit_images) -> None:
    import grpc

    with ZooClient(server) as zoo:
        with pytest.raises(zoo_client.ModelNotFound) as missing:
            zoo.classify("no_such_model", [digit_images[0]])
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(zoo_client.InvalidInput, match="image"):
            zoo.classify(TINY, [b"not an image"])
        with pytest.raises(zoo_client.InvalidInput, match="top_k"):
            zoo.classify(TINY, [digit_images[0]], top_k=-1)
        # Past the number of classes, top_k is clamped (as Keras's decode_predictions is).
        assert len(zoo.classify(TINY, [digit_images[0]], top_k=5000)[0]) == 1000
        with pytest.raises(zoo_client.InvalidInput, match="non-empty"):
            zoo.classify(TINY, [])
        with pytest.raises(zoo_client.ModelNotFound):
            zoo.get_job("no-such-job")
        # The server still answers after all that.
        assert zoo.classify(TINY, [digit_images[0]], top_k=1)


def test_deadline_is_enforced(server, digit_images) -> None:
    with ZooClient(server) as zoo, pytest.raises(zoo_client.DeadlineExceeded):
        zoo.classify(TINY, digit_images * 20, timeout=0.001)


def test_unavailable_is_retried_until_the_server_appears(server, tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    with ZooClient(f"127.0.0.1:{port}", retries=1, timeout=2) as zoo:
        started = time.monotonic()
        with pytest.raises(zoo_client.Unavailable):
            zoo.list_models()
        assert time.monotonic() - started < 10
    process = None
    try:
        with ZooClient(f"127.0.0.1:{port}", retries=12, timeout=5) as zoo:
            def start_later() -> None:
                nonlocal process
                time.sleep(1.0)
                process = start_server(tmp_path / "late-home", env, port)

            import threading

            threading.Thread(target=start_later).start()
            assert zoo.list_models("vgg16")[0].name == "vgg16"
    finally:
        time.sleep(1.2)
        if process is not None:
            process.terminate()
            process.wait(timeout=60)


def test_wait_until_serving_returns_on_a_server_and_names_the_problem_without_one(server):
    with ZooClient(server) as zoo:
        zoo.wait_until_serving(timeout=5)
    with ZooClient(f"127.0.0.1:{free_port()}") as zoo:
        started = time.monotonic()
        with pytest.raises(zoo_client.Unavailable, match="not serving after 1 s .* is `zoo "
                                                          "serve` running at that address"):
            zoo.wait_until_serving(timeout=1)
        assert 0.9 < time.monotonic() - started < 5

    async def main() -> None:
        async with AsyncZooClient(server) as zoo:
            await zoo.wait_until_serving(timeout=5)
        async with AsyncZooClient(f"127.0.0.1:{free_port()}") as zoo:
            with pytest.raises(zoo_client.Unavailable, match="not serving after 1 s"):
                await zoo.wait_until_serving(timeout=1)

    asyncio.run(main())


def test_async_client(server, digit_images) -> None:
    async def main() -> tuple[list, list]:
        async with AsyncZooClient(server, timeout=120) as zoo:
            models = await zoo.list_models("vgg*")
            results = await asyncio.gather(
                *(zoo.classify(TINY, [image], top_k=2) for image in digit_images))
            with pytest.raises(zoo_client.ModelNotFound):
                await zoo.get_model("nope")
            return models, results

    models, results = asyncio.run(main())
    assert [m.name for m in models] == ["vgg16", "vgg19"]
    assert len(results) == 3 and all(len(r[0]) == 2 for r in results)


def test_embed_text(server) -> None:
    with ZooClient(server) as zoo:
        vectors = np.array(zoo.embed("minilm_l6_v2", ["a cat on a mat", "a kitten on a rug",
                                                      "interest rates rose"]))
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_upload_finetune_watch_and_classify_with_the_result(server, tmp_path) -> None:
    data = write_digits(tmp_path / "train", per_class=20, start=90)
    with ZooClient(server) as zoo:
        dataset = zoo.upload_dataset(data)
        assert dataset.examples == 200 and dataset.classes == tuple(str(d) for d in range(10))
        job = zoo.finetune(TINY, dataset.id, name="digits", epochs=3, image_size=32,
                           learning_rate=3e-3, patience=0)
        assert job.state in ("queued", "running")
        events = list(zoo.watch_job(job.id))
        assert [e.epoch for e in events if e.kind == "epoch"] == [3]  # phase 1 fitted at once
        final = zoo.wait(job.id)
        assert final.state == "succeeded" and final.result == "digits"
        assert any(j.id == job.id for j in zoo.list_jobs())
        sample = data / "7" / "000.png"
        prediction = zoo.classify("digits", [sample], top_k=1)[0][0]
        assert prediction.label in {str(d) for d in range(10)}
        info = zoo.get_model("digits")
        assert info.origin == "finetuned" and info.version == final.result_version >= 1
        with pytest.raises(zoo_client.FailedPrecondition):
            zoo.cancel_job(job.id)


def test_cli_talks_to_the_server(server, digit_images) -> None:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    cli = [sys.executable, "-m", "zoo.cli.main", "--server", server]
    listed = subprocess.run([*cli, "list", "vgg*", "--json"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [m["name"] for m in json.loads(listed.stdout)] == ["vgg16", "vgg19"]
    predicted = subprocess.run([*cli, "predict", TINY, str(digit_images[0]), "--json"],
                               capture_output=True, text=True, env=env, timeout=60)
    assert predicted.returncode == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)[0]["predictions"]) == 5
    assert "tensorflow" not in predicted.stderr.lower()
    jobs = subprocess.run([*cli, "jobs", "show", "nope"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert jobs.returncode == 1 and "NOT_FOUND" in jobs.stderr
    assert len(jobs.stderr.strip().splitlines()) == 1


def test_cli_finetunes_on_the_server_with_every_flag_and_predicts_two_classes(server, tmp_path):
    """`zoo --server ... finetune` sends every hyper-parameter flag (--dropout was dropped
    silently once), prints the local command's lines, and the 2-class result predicts with
    the default top-k (min(5, classes))."""
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    cli = [sys.executable, "-m", "zoo.cli.main", "--server", server]
    data = write_digits(tmp_path / "pair", classes=(0, 1), per_class=12, start=90)
    run = subprocess.run([*cli, "finetune", TINY, "--dropout", "0.5", "--data", str(data),
                          "--epochs", "2", "--name", "pair", "--image-size", "32"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "phase 1: head fitted to its optimum" in run.stdout
    assert "served as pair version 1" in run.stdout
    listed = subprocess.run([*cli, "jobs", "list", "--json"], capture_output=True, text=True,
                            env=env, timeout=60)
    job = next(j for j in json.loads(listed.stdout) if j["output_name"] == "pair")
    assert job["hyperparameters"]["dropout"] == 0.5
    image = str(data / "1" / "000.png")
    predicted = subprocess.run([*cli, "predict", "pair", "--json", image, image],
                               capture_output=True, text=True, env=env, timeout=60)
    assert predicted.returncode == 0, predicted.stderr
    assert [len(r["predictions"]) for r in json.loads(predicted.stdout)] == [2, 2]


def test_client_alone_in_a_fresh_venv_never_imports_tensorflow(server, tmp_path, digit_images):
    venv = tmp_path / "client-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT / "client")],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    script = f"""
import sys
from zoo_client import ZooClient
with ZooClient({server!r}) as zoo:
    zoo.wait_until_serving(timeout=10)
    names = [m.name for m in zoo.list_models("vgg*")]
    top = zoo.classify({TINY!r}, [{str(digit_images[0])!r}], top_k=1)[0][0]
assert names == ["vgg16", "vgg19"], names
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
try:
    import tensorflow
except ImportError:
    print("ok", top.label)
else:
    raise SystemExit("tensorflow is importable in the client-only venv")
"""
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_client_uses_only_the_proto(server, digit_images) -> None:
    node_modules = ROOT / "tests" / "node" / "node_modules"
    if not (node_modules / "@grpc" / "grpc-js").is_dir():
        pytest.skip("run `make test` (npm ci --prefix tests/node) first")
    result = subprocess.run(["node", str(ROOT / "tests" / "node" / "client.mjs"), server, TINY,
                             str(digit_images[0])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert TINY in answer["models"]
    assert len(answer["predictions"]) == 3 and answer["predictions"][0]["label"]
    assert answer["not_found"] == "NOT_FOUND"
    assert {"zoo.v1.ModelService", "zoo.v1.InferenceService", "zoo.v1.FineTuneService",
            "grpc.health.v1.Health"} <= set(answer["services"])


def test_text_classifier_job_and_classify_text(server) -> None:
    sentiment = ROOT / "tests" / "fixtures" / "sentiment.csv"
    with ZooClient(server, timeout=120) as zoo:
        job = zoo.finetune("minilm_l6_v2", sentiment, name="sentiment", epochs=30,
                           learning_rate=0.01, patience=0)
        final = zoo.wait(job.id)
        assert final.state == "succeeded", final.error
        results = zoo.classify_text("sentiment", ["I loved every minute of it",
                                                  "Dreadful and boring"], top_k=1)
        assert [r[0].label for r in results] == ["positive", "negative"]
        with pytest.raises(zoo_client.InvalidInput):
            zoo.classify_text("sentiment", [""])
