"""Runtimes: OpenVINO computes what TensorFlow computes, or is refused; `auto` only ever
picks a runtime that passed; conversions are cached; everything works without OpenVINO."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY, ZOO, zoo_cli_env
from zoo.errors import InvalidInputError, ParityError, RuntimeUnavailableError
from zoo.vision import parity
from zoo.vision.probe import SIZE, probe_pixels

keras = pytest.importorskip("keras")

from zoo.vision import runtimes  # noqa: E402
from zoo.vision.imagenet import preprocess  # noqa: E402
from zoo.vision.openvino_ir import compiled_dir, model_key  # noqa: E402
from zoo.vision.runtimes import Candidate, load_runtime, select, tf_call  # noqa: E402

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="OpenVINO is not installed: pip install 'zoo[openvino]' "
                             "(`make test` installs it)")
SIZE_PX = (96, 96)


def prepare(pixels: np.ndarray) -> np.ndarray:
    return preprocess(np.asarray(pixels, dtype=np.float32), "tf")


@pytest.fixture(scope="module")
def model():
    """TINY's architecture with random weights and BatchNorm statistics calibrated on
    photographs (tests.keras_weights), so its outputs vary from image to image."""
    from tests.keras_weights import calibrate_batchnorm
    from zoo.hub.registry import get_spec

    keras.utils.set_random_seed(3)
    net = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(*SIZE_PX, 3),
                                         classes=10)
    calibrate_batchnorm(net, get_spec(TINY))
    return net


@pytest.fixture(scope="module")
def small():
    """A few layers of the same kinds (convolutions, BatchNorm, pooling, a softmax head):
    what export and conversion tests need, converted in a fraction of MobileNetV2's time."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((*SIZE_PX, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    net = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    net(prepare(probe_pixels(SIZE_PX, 8)), training=True)  # BatchNorm statistics move
    return net


@pytest.fixture(scope="module")
def converted_home(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ZOO_HOME holding `model`'s IR, so the tests not about conversion skip its seconds."""
    import os

    import openvino as ov

    from zoo.vision.openvino_ir import convert_cached

    home = tmp_path_factory.mktemp("converted_home")
    saved = os.environ.get("ZOO_HOME")
    os.environ["ZOO_HOME"] = str(home)
    try:
        convert_cached(model, SIZE_PX, ov)
    finally:
        if saved is not None:
            os.environ["ZOO_HOME"] = saved
    return home


@pytest.fixture()
def warm(converted_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOO_HOME", str(converted_home))
    return converted_home


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    """Inputs the gates never saw: the last probe images, mirrored."""
    return prepare(probe_pixels(SIZE_PX)[-12:, :, ::-1])


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return parity.relative_error(b, a)


# --- the gate itself ------------------------------------------------------------------


def test_probe_set_is_real_varied_and_fixed() -> None:
    pixels = probe_pixels(SIZE_PX)
    assert pixels.shape == (SIZE, 96, 96, 3) and pixels.dtype == np.uint8
    assert len({p.tobytes() for p in pixels}) == SIZE  # no two the same
    np.testing.assert_array_equal(pixels, probe_pixels(SIZE_PX))
    assert probe_pixels((64, 80), 16).shape == (16, 64, 80, 3)


def test_f32_gate_is_relative_error() -> None:
    reference = np.random.default_rng(0).normal(size=(16, 10)).astype(np.float32)
    assert parity.check(reference, reference * (1 + 5e-6), parity.F32).passed
    failed = parity.check(reference, reference + 1e-3 * np.abs(reference).max(), parity.F32)
    assert not failed.passed and "1.0e-03" in failed.reason
    assert not parity.check(reference, reference[:, :5], parity.F32).passed  # wrong shape
    assert not parity.check(reference, reference * np.nan, parity.F32).passed


def test_bf16_gate_counts_top1_flips_and_top5_overlap() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(100, 20))
    one_flip, two_flips = reference.copy(), reference.copy()
    for rows, out in ((1, one_flip), (2, two_flips)):
        for i in range(rows):
            out[i] = -out[i]  # the top class becomes the bottom one
    assert parity.check(reference, reference + 1e-5 * rng.normal(size=reference.shape),
                         parity.BF16).passed
    passed = parity.check(reference, one_flip, parity.BF16)
    assert passed.passed and passed.top1_agreement == pytest.approx(0.99)
    assert not parity.check(reference, two_flips, parity.BF16).passed
    features = parity.check(reference, reference, parity.BF16, outputs="features")
    assert not features.passed and "features" in features.reason


# --- the gate refuses, auto never picks what failed, without OpenVINO ------------------


def test_a_broken_runtime_is_refused_with_its_figures(model) -> None:
    reference = tf_call(model, SIZE_PX)
    probe = prepare(probe_pixels(SIZE_PX, runtimes.F32_PROBE_IMAGES))
    broken = Candidate("broken", lambda x: reference(x) * 1.01, parity.F32)

    with pytest.raises(RuntimeUnavailableError, match="broken .*f32 parity gate.*1.0e-02"):
        select("broken", reference, [broken], probe)


def test_auto_never_picks_a_runtime_that_failed_its_gate(model, inputs) -> None:
    reference = tf_call(model, SIZE_PX)
    probe = prepare(probe_pixels(SIZE_PX))
    zeros = Candidate("instant", lambda x: np.zeros((len(x), 10), np.float32), parity.F32)
    flipped = Candidate("flipped", lambda x: -reference(x), parity.BF16)

    runtime = select(runtimes.AUTO, reference, [zeros, flipped], probe, batch_sizes=(1, 8))

    report = runtime.report
    assert set(report.refused) == {"instant", "flipped"}
    assert report.by_batch_size == {} and report.runtime == runtimes.TF
    assert not report.parity["instant"].passed and not report.parity["flipped"].passed
    # Every top-1 flipped in the first chunk: the gate stops there instead of running all.
    assert report.parity["flipped"].images == runtimes.CHUNK
    assert f"stopped after {runtimes.CHUNK} of {SIZE} images" in report.parity["flipped"].reason
    np.testing.assert_array_equal(runtime(inputs), reference(inputs))


def test_auto_chooses_per_batch_size_among_passing_runtimes_only(model, inputs) -> None:
    reference = tf_call(model, SIZE_PX)
    probe = prepare(probe_pixels(SIZE_PX, 16))
    same = Candidate("same", lambda x: reference(x) * (1 + 1e-7), parity.F32)
    wrong = Candidate("wrong", lambda x: reference(x) + 1.0, parity.F32)

    runtime = select(runtimes.AUTO, reference, [same, wrong], probe, batch_sizes=(1, 8, 32))

    report = runtime.report
    assert sorted(report.by_batch_size) == [1, 8, 32]
    assert set(report.by_batch_size.values()) <= {runtimes.TF, "same"}
    assert set(report.throughput) == {runtimes.TF, "same"}  # the refused one is not timed
    assert all(v > 0 for by_size in report.throughput.values() for v in by_size.values())
    assert rel_error(runtime(inputs), reference(inputs)) <= 1e-6
    json.dumps(report.to_dict())  # what GetModel and `zoo info` will show


def test_without_openvino_auto_is_tf_and_asking_for_it_says_how_to_install(model,
                                                                           inputs) -> None:
    """`installed` stands in for an environment without the openvino package."""
    runtime = load_runtime(model, SIZE_PX, runtimes.AUTO, prepare=prepare,
                           installed=(runtimes.TF,))

    assert runtime.name == runtimes.TF
    assert set(runtime.report.refused) == {runtimes.OPENVINO, runtimes.OPENVINO_BF16}
    assert "pip install 'zoo[openvino]'" in runtime.report.refused[runtimes.OPENVINO]
    assert not compiled_dir().exists()  # nothing converted
    np.testing.assert_array_equal(runtime(inputs), tf_call(model, SIZE_PX)(inputs))
    with pytest.raises(RuntimeUnavailableError, match=r"pip install 'zoo\[openvino\]'"):
        load_runtime(model, SIZE_PX, runtimes.OPENVINO, installed=(runtimes.TF,))


def test_tf_runtime_is_todays_path_and_unknown_names_are_refused(model, inputs) -> None:
    runtime = load_runtime(model, SIZE_PX, runtimes.TF)
    assert runtime.name == runtimes.TF and runtime.report.parity == {}
    np.testing.assert_allclose(runtime(inputs), np.asarray(model(inputs, training=False)),
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(InvalidInputError, match="unknown runtime 'onnx'; one of tf, openvino"):
        load_runtime(model, SIZE_PX, "onnx")


# --- OpenVINO ---------------------------------------------------------------------------


@needs_openvino
def test_openvino_f32_matches_tensorflow_and_is_forced_to_f32(model, inputs, warm) -> None:
    import openvino as ov

    runtime = load_runtime(model, SIZE_PX, runtimes.OPENVINO, prepare=prepare)

    figures = runtime.report.parity[runtimes.OPENVINO]
    assert figures.passed and figures.max_relative_error <= parity.F32_MAX_RELATIVE_ERROR
    assert rel_error(runtime(inputs), tf_call(model, SIZE_PX)(inputs)) <= 1e-4
    # On a CPU with bf16 instructions OpenVINO's default is bf16: f32 must be asked for.
    call = runtime.call_for(1)
    assert isinstance(call, runtimes.OpenVINOCall)
    assert call.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


@needs_openvino
def test_bf16_runs_where_the_cpu_has_it_and_only_on_class_scores(model, warm) -> None:
    import openvino as ov

    capable = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    try:
        runtime = load_runtime(model, SIZE_PX, runtimes.OPENVINO_BF16, prepare=prepare)
    except RuntimeUnavailableError as e:  # refused: no bf16 here, or the gate said no
        assert "bf16" in str(e)
    else:
        assert capable
        figures = runtime.report.parity[runtimes.OPENVINO_BF16]
        assert figures.images == SIZE and figures.top1_agreement >= 0.99
    features = keras.Model(model.input, model.layers[-2].output)
    with pytest.raises(RuntimeUnavailableError, match="class scores only; these are features"):
        load_runtime(features, SIZE_PX, runtimes.OPENVINO_BF16, outputs="features")


def test_the_cache_key_changes_with_weights_size_and_version(model) -> None:
    changed = keras.models.clone_model(model)
    changed.set_weights(model.get_weights())
    assert model_key(changed, SIZE_PX, "v") == model_key(model, SIZE_PX, "v")
    bias = changed.layers[-1].bias
    bias.assign(bias.numpy() + 0.5)
    assert model_key(changed, SIZE_PX, "v") != model_key(model, SIZE_PX, "v")
    assert model_key(model, (64, 64), "v") != model_key(model, SIZE_PX, "v")
    assert model_key(model, SIZE_PX, "w") != model_key(model, SIZE_PX, "v")


@needs_openvino
def test_conversion_happens_once_across_loaders_and_again_when_torn(small) -> None:
    """Two loaders at once (threads take the file lock as processes do): one converts,
    the other waits and reads its result; no partial folder is left. A later load finds
    it; a corrupt entry is converted again."""
    import openvino as ov

    from zoo.vision.openvino_ir import convert_cached

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(
        convert_cached(small, SIZE_PX, ov)[1])) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.cached for r in results) == [False, True]
    key = results[0].key
    assert [p.name for p in compiled_dir().iterdir()] == [key]

    runtime = load_runtime(small, SIZE_PX, runtimes.OPENVINO, prepare=prepare)
    assert runtime.report.conversion is not None and runtime.report.conversion.cached
    # The gate's result is kept beside the IR, for this probe and CPU, and used again.
    kept = list((compiled_dir() / key / "parity").glob("openvino-*.json"))
    assert len(kept) == 1
    again = load_runtime(small, SIZE_PX, runtimes.OPENVINO, prepare=prepare)
    assert again.report.parity == runtime.report.parity
    assert list((compiled_dir() / key / "parity").glob("*.json")) == kept

    (compiled_dir() / key / "model.bin").write_bytes(b"torn")
    source, redone = convert_cached(small, SIZE_PX, ov)
    assert not redone.cached and redone.key == key
    assert ov.Core().read_model(str(source)) is not None


@needs_openvino
@pytest.mark.parametrize("name", [runtimes.OPENVINO, runtimes.AUTO])
def test_two_threads_each_get_their_own_results(model, name, warm) -> None:
    runtime = load_runtime(model, SIZE_PX, name, prepare=prepare, batch_sizes=(1, 8))
    batches = [prepare(probe_pixels(SIZE_PX)[i * 8:(i + 1) * 8]) for i in range(2)]
    expected = [runtime(batch) for batch in batches]
    assert rel_error(expected[0], expected[1]) > 1e-2  # different inputs, different outputs
    mismatches: list[int] = []

    def work(i: int) -> None:
        for _ in range(15):
            if not np.array_equal(runtime(batches[i]), expected[i]):
                mismatches.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []


# --- export -------------------------------------------------------------------------------


def _export_params():
    return [
        pytest.param("openvino", marks=needs_openvino),
        "savedmodel",
        pytest.param("onnx", marks=pytest.mark.skipif(
            importlib.util.find_spec("tf2onnx") is None, reason="pip install 'zoo[onnx]'")),
        "litert",
    ]


@pytest.mark.parametrize("fmt", _export_params())
def test_export_writes_a_file_that_computes_what_keras_does(small, fmt, tmp_path) -> None:
    from zoo.vision.export import export

    result = export(small, fmt, tmp_path / "out", size=SIZE_PX, prepare=prepare)

    assert result.parity.passed and result.parity.max_relative_error <= 1e-4
    assert result.artifact.exists() and result.path == tmp_path / "out"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial folder left


def test_export_refuses_an_occupied_folder_and_unknown_formats(small, tmp_path) -> None:
    from zoo.vision.export import export

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="already exists"):
        export(small, "savedmodel", tmp_path / "taken", size=SIZE_PX)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(InvalidInputError, match="unknown export format 'tflite'"):
        export(small, "tflite", tmp_path / "new", size=SIZE_PX)


def test_export_that_disagrees_leaves_nothing(tmp_path) -> None:
    """A layer with a Python side effect (a call counter added to its output) computes
    something new on every eager call, while the traced export freezes one value: the
    check catches the difference and nothing is written."""

    class Drifting(keras.layers.Layer):

        calls = 0

        def call(self, x):
            Drifting.calls += 1
            return x + float(Drifting.calls)

    inputs = keras.Input((*SIZE_PX, 3))
    net = keras.Model(inputs, Drifting()(keras.layers.GlobalAveragePooling2D()(inputs)))
    from zoo.vision.export import export

    with pytest.raises(ParityError, match="disagrees"):
        export(net, "savedmodel", tmp_path / "out", size=SIZE_PX)
    assert list(tmp_path.iterdir()) == []


@needs_openvino
@pytest.mark.slow
def test_zoo_export_command(weight_server, tmp_path: Path) -> None:
    out = tmp_path / "ir"
    result = subprocess.run([*ZOO, "export", TINY, "--format", "openvino", "--out", str(out),
                             "--json"], capture_output=True, text=True, env=zoo_cli_env(),
                            timeout=240)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["parity"]["passed"] and data["input"].startswith("float32 (N, 96, 96, 3)")
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    again = subprocess.run([*ZOO, "export", TINY, "--format", "openvino", "--out", str(out)],
                           capture_output=True, text=True, env=zoo_cli_env(), timeout=240)
    assert again.returncode == 1
    assert again.stderr.strip().endswith("give --out a new folder or remove it")


def test_zoo_export_refuses_a_text_model_in_one_line() -> None:
    result = subprocess.run([*ZOO, "export", "minilm_l6_v2", "--format", "onnx", "--out",
                             "unused"], capture_output=True, text=True, env=zoo_cli_env(),
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("zoo: error: minilm_l6_v2 is a text-embedding model; zoo export "
                             "writes image models\n")


# --- the runtime everywhere an image model runs forward ------------------------------------


@needs_openvino
def test_server_and_cli_serve_through_the_runtime_and_say_which(pretrained_tiny, tmp_path):
    """`zoo serve --model-runtime TINY=openvino`: Classify answers as tf does (to f32
    parity), GetModel and `zoo --server ... info` say which runtime and why; `zoo predict
    --runtime openvino` locally too."""
    from tests.serving import ServerProcess, Stubs, mirror_env, spec
    from zoo_api.v1 import inference_pb2, models_pb2

    env = mirror_env(pretrained_tiny, tmp_path)
    image = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(probe_pixels(SIZE_PX, 1)[0].astype(np.uint8)).save(image)
    server = ServerProcess(tmp_path / "home", env, "--model-runtime", f"{TINY}=openvino",
                           "--preload", TINY)
    stubs = Stubs(server.target)
    try:
        answer = stubs.inference.Classify(inference_pb2.ClassifyRequest(
            model=spec(), images=[image.read_bytes()], top_k=5))
        info = stubs.models.GetModel(models_pb2.GetModelRequest(model=spec())).model
        assert info.runtime == "openvino" and "parity" in info.runtime_report_json
        assert info.runtime_reason
        shown = subprocess.run([*ZOO, "--server", server.target, "info", TINY],
                               capture_output=True, text=True, env=env, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert "openvino" in shown.stdout and "runtime_reason" in shown.stdout
    finally:
        stubs.close()
        assert server.stop() == 0
    local = subprocess.run([*ZOO, "predict", TINY, str(image), "--runtime", "openvino",
                            "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert local.returncode == 0, local.stderr
    assert "runtime openvino" in local.stderr
    served = [(p.index, p.score) for p in answer.results[0].predictions]
    predicted = [(p["index"], p["score"]) for p in json.loads(local.stdout)[0]["predictions"]]
    assert [i for i, _ in served] == [i for i, _ in predicted]
    np.testing.assert_allclose([s for _, s in served], [s for _, s in predicted], atol=1e-4)


@needs_openvino
def test_phase_one_features_through_openvino_agree_with_tf(weight_server, tmp_path):
    import zoo
    from tests.digits import write_digits

    data = write_digits(tmp_path / "digits", classes=(0, 1, 2), per_class=10, start=90)
    results = {}
    for runtime in ("tf", "openvino"):
        events: list[dict] = []
        results[runtime] = zoo.finetune(TINY, data, tmp_path / runtime, epochs=2, image_size=96,
                                        patience=0, runtime=runtime, on_event=events.append)
        features = next(e for e in events if e["event"] == "features")
        assert features["runtime"].startswith(f"{runtime}:")
    assert results["tf"].metrics["accuracy"] == results["openvino"].metrics["accuracy"]
    np.testing.assert_allclose(results["tf"].history["loss"],
                               results["openvino"].history["loss"], rtol=1e-3)
