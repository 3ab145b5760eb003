"""Training a head on cached features: fit's results and callbacks, one compiled loop."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from zoo.finetuning import trainer  # noqa: E402
from zoo.finetuning.head import fit_on_arrays  # noqa: E402
from zoo.finetuning.image import head_block  # noqa: E402
from zoo.finetuning.trainer import classifier_logs, compile_classifier  # noqa: E402

CLASSES, DIM = 4, 16


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features that separate the classes (with noise), one-hot targets, labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    centres = np.random.default_rng(0).normal(0, 2, (CLASSES, DIM))
    x = (centres[labels] + rng.normal(0, 1, (n, DIM))).astype("float32")
    return x, np.eye(CLASSES, dtype="float32")[labels], labels


def _head(seed: int = 0, dropout: float = 0.1):
    keras.utils.set_random_seed(seed)
    head = head_block(DIM, CLASSES, dropout)
    compile_classifier(head, 1e-2, 0.0, CLASSES)
    return head


def test_the_head_learns_and_logs_what_fit_logs() -> None:
    x, y, _ = _data(200, 1)
    xv, yv, labels_v = _data(60, 2)
    reference = _head().fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=16, verbose=0)
    seen: list[tuple[int, dict]] = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append((e, logs)))
    head = _head()

    history = fit_on_arrays(head, x, y, validation_data=(xv, yv), epochs=8, batch_size=16,
                            callbacks=[record])

    assert set(history) == set(reference.history)  # loss, metrics and their val_ twins
    assert [e for e, _ in seen] == list(range(8))
    assert history["loss"][-1] < history["loss"][0] / 2
    predicted = np.asarray(head(xv, training=False)).argmax(1)
    assert (predicted == labels_v).mean() == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    assert history["val_accuracy"][-1] >= 0.9


def test_same_seed_same_result_and_resume_continues_the_same_run(tmp_path) -> None:
    """Each epoch's batch order comes from (seed, epoch), so without dropout (whose RNG
    state a checkpoint does not keep) a resumed run retraces the uninterrupted one."""
    x, y, _ = _data(100, 3)
    xv, yv, _ = _data(30, 4)
    straight = _head(dropout=0.0)
    full = fit_on_arrays(straight, x, y, validation_data=(xv, yv), epochs=4, batch_size=16,
                         seed=7)
    again = fit_on_arrays(_head(dropout=0.0), x, y, validation_data=(xv, yv), epochs=4, batch_size=16, seed=7)
    assert again == full

    first = _head(dropout=0.0)
    fit_on_arrays(first, x, y, validation_data=(xv, yv), epochs=2, batch_size=16, seed=7)
    first.save(tmp_path / "checkpoint.keras")
    resumed = keras.saving.load_model(tmp_path / "checkpoint.keras", safe_mode=True)
    rest = fit_on_arrays(resumed, x, y, validation_data=(xv, yv), epochs=4, initial_epoch=2,
                         batch_size=16, seed=7)
    np.testing.assert_allclose(rest["val_loss"], full["val_loss"][2:], rtol=1e-4)
    np.testing.assert_allclose(resumed.get_weights()[0], straight.get_weights()[0], atol=1e-5)


def test_sample_weights_change_the_training() -> None:
    x, y, labels = _data(120, 5)
    xv, yv, _ = _data(30, 6)
    plain = fit_on_arrays(_head(), x, y, validation_data=(xv, yv), epochs=2, batch_size=16)
    weights = np.where(labels == 0, 5.0, 1.0).astype("float32")
    weighted = fit_on_arrays(_head(), x, y, validation_data=(xv, yv), epochs=2, batch_size=16,
                             sample_weight=weights)
    assert weighted["loss"] != plain["loss"]


def test_a_callback_can_stop_training() -> None:
    x, y, _ = _data(64, 7)

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    history = fit_on_arrays(_head(), x, y, validation_data=(x[:16], y[:16]), epochs=10,
                            batch_size=16, callbacks=[StopAfterTwo()])
    assert len(history["loss"]) == 2


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_a_fitted_heads_logs_are_what_evaluate_reports(smoothing: float, monkeypatch) -> None:
    """The fitted head's history entry comes from eager calls, not evaluate: the same
    loss (sample-weighted) and metrics (not weighted), whatever rows a call reads."""
    x, y, _ = _data(300, 5)
    weights = np.random.default_rng(6).uniform(0.2, 3.0, len(x)).astype("float32")
    head = _head()
    compile_classifier(head, 1e-2, smoothing, CLASSES)
    for sample_weight in (None, weights):
        expected = head.evaluate(x, y, sample_weight=sample_weight, verbose=0, return_dict=True)
        for rows in (8192, 64):
            monkeypatch.setattr(trainer, "EAGER_ROWS", rows)
            logs = classifier_logs(head, x, y, sample_weight, smoothing)
            assert logs == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-5)
