"""Fine-tuning end to end on real handwritten digits, with weights from the local server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.conftest import PYTHONPATH, TINY
from tests.digits import write_digits

pytestmark = pytest.mark.slow
FAST = {"image_size": 32, "batch_size": 32, "learning_rate": 3e-3, "patience": 0}


@pytest.fixture()
def digits(tmp_path: Path) -> Path:
    # Later examples than the ones the test weights were pretrained on.
    return write_digits(tmp_path / "digits", per_class=50, start=90)


def test_finetune_reaches_high_accuracy_and_writes_a_zoo_model(weight_server, digits, tmp_path):
    events: list[dict] = []
    out = tmp_path / "digits-model"
    result = zoo.finetune(TINY, digits, out, epochs=8, on_event=events.append, **FAST)

    assert result.cached_features and result.metrics["accuracy"] >= 0.85
    assert result.classes == [str(d) for d in range(10)]
    for name in ("model.keras", "zoo.json", "labels.txt", "metrics.json", "history.json",
                 "README.md", "plots/training_curves.png", "plots/confusion_matrix.png"):
        assert (out / name).is_file(), name
    assert any((out / "logs").rglob("*tfevents*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["examples"] == 100
    assert set(metrics["per_class"]) == set(result.classes)
    assert [e["event"] for e in events][:4] == ["data", "phase", "features", "head"]
    # Phase 1 fits the head to its optimum at once: no epoch budget decides where it ends.
    head = next(e for e in events if e["event"] == "head")
    assert head["converged"] and head["epoch"] == 8 and head["val_accuracy"] >= 0.85
    assert not [e for e in events if e["event"] == "epoch"]
    assert json.loads((out / "zoo.json").read_text())["training"]["head_fit"]["converged"]
    assert "validation" in (out / "README.md").read_text().lower()

    # The directory is itself a Zoo model: by path and by recorded name.
    sample = sorted((digits / "7").glob("*.png"))[:5]
    predictions = zoo.predict(out, sample, top_k=3)
    assert sum(p[0].label == "7" for p in predictions) >= 4
    assert zoo.predict("digits-model", sample[:1], top_k=1)[0][0].label == predictions[0][0].label
    model = zoo.load_model(out)
    assert model.output_shape == (None, 10)


def test_cached_and_uncached_phase_one_agree(weight_server, digits, tmp_path):
    # The same epoch-by-epoch recipe (fit_head off) on cached features and on images.
    cached = zoo.finetune(TINY, digits, tmp_path / "cached", epochs=3, fit_head=False, **FAST)
    plain = zoo.finetune(TINY, digits, tmp_path / "plain", epochs=3, cache_features=False, **FAST)
    assert not plain.cached_features
    assert abs(cached.metrics["accuracy"] - plain.metrics["accuracy"]) <= 0.05
    # Different batch orders and dropout draws, same recipe: the end points agree.
    assert cached.history["val_loss"][-1] == pytest.approx(plain.history["val_loss"][-1], rel=0.15)


def test_resume_continues_from_the_last_checkpoint(weight_server, digits, tmp_path):
    out = tmp_path / "resumable"
    epochs_seen: list[int] = []

    def record(event: dict) -> None:
        if event["event"] == "epoch":
            epochs_seen.append(event["epoch"])

    with pytest.raises(InterruptedError):
        zoo.finetune(TINY, digits, out, epochs=5, on_event=record, fit_head=False,
                     should_stop=lambda: len(epochs_seen) >= 2, **FAST)
    assert epochs_seen == [1, 2] and not (out / "zoo.json").exists()
    events: list[dict] = []
    result = zoo.finetune(TINY, digits, out, epochs=5, resume=True, on_event=events.append,
                          fit_head=False, **FAST)
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [3, 4, 5]
    assert next(e for e in events if e["event"] == "phase")["resumed_from_epoch"] == 2
    assert result.epochs_run == 5 and len(result.history["loss"]) == 5


def test_phase_two_unfreezes_the_top_but_not_batchnorm(weight_server, digits, tmp_path):
    events: list[dict] = []
    result = zoo.finetune(TINY, digits, tmp_path / "p2", epochs=2, fine_tune_layers=12,
                          on_event=events.append, **FAST)
    phase2 = next(e for e in events if e["event"] == "phase" and e["phase"] == 2)
    assert phase2["unfrozen_layers"] == 12
    assert phase2["learning_rate"] == pytest.approx(FAST["learning_rate"] / 10)
    assert [(e["event"], e["phase"]) for e in events if e["event"] in ("epoch", "head")] == [
        ("head", 1), ("epoch", 2), ("epoch", 2)]
    assert result.epochs_run == 3 and result.metrics["accuracy"] >= 0.8


def test_a_run_resumed_in_phase_two_starts_from_the_best_phase_one_epoch(
    weight_server, digits, tmp_path
):
    import keras

    class SpoilLastEpoch(keras.callbacks.Callback):
        """Records every phase-1 epoch's weights and val_loss; turns the head against its
        classes before the last epoch, so that epoch is worse than an earlier one."""

        def __init__(self) -> None:
            super().__init__()
            self.weights: list[list[np.ndarray]] = []
            self.losses: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1 and len(self.model.layers) <= 3:  # the cached head, phase 1
                self.model.set_weights([-10 * w for w in self.model.get_weights()])

        def on_epoch_end(self, epoch, logs=None):
            if len(self.model.layers) <= 3:
                self.weights.append(self.model.get_weights())
                self.losses.append(logs["val_loss"])

    spoil = SpoilLastEpoch()
    out = tmp_path / "p2-resumed"
    with pytest.raises(InterruptedError):  # stopped once phase 1 is over, before phase 2
        zoo.finetune(TINY, digits, out, epochs=2, fine_tune_layers=4, callbacks=[spoil],
                     fit_head=False, should_stop=lambda: len(spoil.losses) >= 2, **FAST)
    best = int(np.argmin(spoil.losses))
    assert best == 0  # the spoiled last epoch is not the best
    saved = keras.saving.load_model(out / "checkpoints" / "phase1.keras").get_weights()
    for got, want in zip(saved, spoil.weights[best], strict=True):
        np.testing.assert_allclose(got, want)
    events: list[dict] = []
    result = zoo.finetune(TINY, digits, out, epochs=2, fine_tune_layers=4, resume=True,
                          fit_head=False, on_event=events.append, **FAST)
    assert [(e["phase"], e["epoch"]) for e in events if e["event"] == "epoch"] == [(2, 3), (2, 4)]
    assert result.metrics["accuracy"] >= 0.8


def test_augmentation_class_weights_and_label_smoothing_train_on_images(
    weight_server, digits, tmp_path
):
    # Make the data imbalanced: few 0s.
    for extra in sorted((digits / "0").glob("*.png"))[10:]:
        extra.unlink()
    events: list[dict] = []
    result = zoo.finetune(TINY, digits, tmp_path / "aug", epochs=2, augment=True,
                          class_weights=True, label_smoothing=0.1, on_event=events.append, **FAST)
    assert not result.cached_features  # augmentation needs fresh images every epoch
    assert next(e for e in events if e["event"] == "phase")["cached_features"] is False
    assert result.meta["data"]["class_counts"]["0"] == 10
    assert result.meta["hyperparameters"]["class_weights"] is True
    assert result.metrics["per_class"]["0"]["support"] == 2


def test_export_savedmodel_serves_raw_pixels(weight_server, digits, tmp_path):
    import tensorflow as tf

    result = zoo.finetune(TINY, digits, tmp_path / "exp", epochs=2, export="savedmodel", **FAST)
    served = tf.saved_model.load(str(result.exported))
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(served.serve(x), zoo.load_model(result.output_dir)(x), atol=1e-5)


def test_corrupt_images_are_skipped_and_named(weight_server, digits, tmp_path, caplog):
    (digits / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (digits / "5" / "empty.jpg").write_bytes(b"")
    events: list[dict] = []
    with caplog.at_level("WARNING", logger="zoo"):
        zoo.finetune(TINY, digits, tmp_path / "m", epochs=1, on_event=events.append, **FAST)
    assert "skipped 2 unreadable image(s)" in caplog.text and "broken.png" in caplog.text
    assert len(events[0]["skipped"]) == 2


def one_class(root: Path) -> Path:
    return write_digits(root / "one", classes=(1,), per_class=5)


def with_empty_class(root: Path) -> Path:
    data = write_digits(root / "with-empty", classes=(1, 2), per_class=5)
    (data / "empty").mkdir()
    return data


def all_unreadable_class(root: Path) -> Path:
    data = write_digits(root / "unreadable", classes=(1, 2), per_class=5)
    (data / "9").mkdir()
    (data / "9" / "a.png").write_bytes(b"not an image")
    return data


def csv_without_columns(root: Path) -> Path:
    (root / "bad.csv").write_text("file,class\nx.png,1\n")
    return root / "bad.csv"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (one_class, "a classifier needs at least 2"),
        (with_empty_class, "empty holds no images"),
        (all_unreadable_class, "class '9' has no readable image"),
        (csv_without_columns, "needs columns `path` and `label`"),
    ],
)
def test_bad_datasets_get_clear_errors(make, message, tmp_path):
    with pytest.raises(zoo.InvalidInputError, match=message):
        zoo.finetune(TINY, make(tmp_path), tmp_path / "out", epochs=1, **FAST)


def test_bad_arguments_get_clear_errors(digits, tmp_path):
    (tmp_path / "afile").write_text("x")
    for kwargs, message in [
        ({"epochs": 0}, r"epochs must be in \[1, 10000\]"),
        ({"val_split": 1.5}, "val_split"),
        ({"image_size": 8}, r"image_size must be in \[32, 2048\]"),
        ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
        ({"export": "onnx"}, "unknown export format"),
    ]:
        with pytest.raises(zoo.InvalidInputError, match=message):
            zoo.finetune(TINY, digits, tmp_path / "out", **{**FAST, **kwargs})
    with pytest.raises(zoo.InvalidInputError, match="is a file"):
        zoo.finetune(TINY, digits, tmp_path / "afile", epochs=1, **FAST)
    with pytest.raises(zoo.ModelNotFoundError):
        zoo.finetune("resnet5", digits, tmp_path / "out")
    # A local model may not take a registry model's name: it would shadow the pretrained one.
    with pytest.raises(zoo.InvalidInputError, match="'mobilenet_v2' is the name of a registry"):
        zoo.finetune(TINY, digits, tmp_path / "mobilenet_v2", epochs=1, **FAST)
    with pytest.raises(zoo.InvalidInputError, match="--name 'resnet50' is the name of a registry"):
        zoo.finetune(TINY, digits, tmp_path / "out", name="resnet50", epochs=1, **FAST)
    assert not (tmp_path / "mobilenet_v2").exists() and not (tmp_path / "out").exists()


def test_cli_finetune_predict_and_list_local(weight_server, digits, tmp_path):
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    zoo_cli = [sys.executable, "-m", "zoo.cli.main"]
    out = tmp_path / "cli-model"
    run = subprocess.run(
        [*zoo_cli, "finetune", TINY, "--data", str(digits), "--out", str(out), "--epochs", "4",
         "--image-size", "32", "--learning-rate", "3e-3", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["accuracy"] >= 0.7

    image = str(sorted((digits / "4").glob("*.png"))[0])
    predicted = subprocess.run([*zoo_cli, "predict", str(out), image, "--top-k", "2", "--json"],
                               capture_output=True, text=True, env=env, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    result = json.loads(predicted.stdout)
    assert result[0]["image"] == image and len(result[0]["predictions"]) == 2

    listed = subprocess.run([*zoo_cli, "list", "--local", "--json"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert [r["name"] for r in json.loads(listed.stdout)] == ["cli-model"]

    bad = subprocess.run([*zoo_cli, "predict", str(out), str(tmp_path / "nope.png")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 1 and "no such file" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_two_class_model_predicts_from_the_cli_and_never_shadows_the_registry(
        weight_server, tmp_path):
    data = write_digits(tmp_path / "pair", classes=(0, 1), per_class=12, start=90)
    out = tmp_path / "pair-model"
    zoo.finetune(TINY, data, out, epochs=1, **FAST)
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    zoo_cli = [sys.executable, "-m", "zoo.cli.main"]
    image = str(data / "1" / "000.png")
    # Flags before the images, and the default top-k of a 2-class model: min(5, 2).
    predicted = subprocess.run([*zoo_cli, "predict", str(out), "--json", image, image],
                               capture_output=True, text=True, env=env, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    assert [len(r["predictions"]) for r in json.loads(predicted.stdout)] == [2, 2]
    clamped = zoo.predict(out, [image], top_k=9)
    assert len(clamped[0]) == 2 and {p.label for p in clamped[0]} == {"0", "1"}

    # include_top=False on a fine-tuned image model: its base's pooled features.
    features = zoo.load_model(out, include_top=False)
    assert features.output_shape[-1] == zoo.load_model(TINY, include_top=False,
                                                       input_shape=(32, 32, 3)).output_shape[-1]
    # An index entry under a registry name (as an older Zoo could write) never shadows it.
    from zoo.model_dir import index_path

    index = index_path()
    index.write_text(json.dumps({TINY: str(out.resolve()), "pair": str(out.resolve())}))
    assert not zoo.resolve(TINY).is_folder and zoo.resolve(TINY).spec.name == TINY
    assert zoo.resolve("pair").folder == out.resolve()
    assert zoo.load_model(TINY).output_shape[-1] == 1000


def test_a_diverged_run_fails_and_leaves_no_model(weight_server, digits, tmp_path):
    """Numbers that cannot be trusted are never served: an epoch whose loss is NaN fails
    the run before it is checkpointed, and no model folder is written."""
    import keras

    class Diverge(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.model.set_weights([w * np.nan for w in self.model.get_weights()])

    out = tmp_path / "diverged"
    with pytest.raises(zoo.NonFiniteError, match="phase 1 epoch 2: .*loss"):
        zoo.finetune(TINY, digits, out, epochs=3, fit_head=False, callbacks=[Diverge()],
                     **FAST)
    assert not (out / "zoo.json").exists() and not (out / "model.keras").exists()
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1, "the diverged epoch was never checkpointed"
