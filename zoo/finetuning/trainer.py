"""The core every fine-tune shares, whatever it trains on: images or texts.

A fine-tune is two phases, each checkpointed every epoch so `resume=True` continues where a
run stopped:

1. a new head trained on the frozen base's features (computed once where they do not
   change between epochs);
2. when asked (`fine_tune_layers`/`fine_tune_fraction`), the top of the base unfrozen and
   trained with the head at a lower learning rate, starting from phase 1's best head.
   The phase-1 model is kept when phase 2 does not improve the validation loss.

`Trainer` owns what both fronts (zoo.finetuning.image, zoo.finetuning.text) would
otherwise each repeat: the output folder, the resume state and its identity check, the
callbacks (events, checkpoints, early stopping with the best epoch restored, per-step
progress), class weights, compiling, and the end of a run: metrics, plots, the model folder
(zoo.model_dir), the model card and the local index. A front only says how to get
features, build the phase-2 model and describe its inputs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo import model_dir
from zoo.errors import InvalidInputError, NonFiniteError
from zoo.finetuning.events import Event
from zoo.finetuning.hyperparameters import HyperParameters
from zoo.finetuning.report import (
    classification_metrics,
    model_card,
    plot_confusion,
    plot_history,
    write_json,
)
from zoo.hub.spec import ModelSpec

STATE_FILE = "state.json"


@dataclass
class FineTuneResult:
    output_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    classes: list[str]
    base: str
    epochs_run: int
    cached_features: bool
    exported: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """How a fine-tune runs, as opposed to how it trains (HyperParameters)."""

    val_data: str | Path | None = None
    callbacks: Sequence[Any] = ()
    resume: bool = False
    export: str | None = None
    name: str | None = None
    record: bool = True  # remember the result in the local index (`zoo list --local`)
    on_event: Callable[[Event], None] | None = None
    should_stop: Callable[[], bool] | None = None
    runtime: str = "tf"  # what runs the frozen base in phase 1 (zoo.vision.runtimes.CHOICES)
    # Images: phase 1's frozen forward pass over a split (zoo.finetuning.image's
    # FeatureExtractor); None: in this process. zoo serve --ray shards it over a cluster.
    extract_features: Callable[..., np.ndarray] | None = None


def checkpoint_epoch(out: str | Path) -> int | None:
    """The epoch a fine-tune in `out` would resume after, or None if it has no checkpoint."""
    path = Path(out) / "checkpoints" / STATE_FILE
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("epoch", 0))
    except (OSError, ValueError, AttributeError):
        return None


def prepare_output(out: str | Path, resume: bool) -> Path:
    """The output folder, refused when it is a file or holds something that is not Zoo's."""
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"--out {folder} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()) and not resume:
        if not (folder / "checkpoints").is_dir() and not model_dir.is_model_dir(folder):
            raise InvalidInputError(
                f"--out {folder} is a non-empty folder that is not a Zoo model; choose another")
    return folder


def balanced_weights(labels: np.ndarray, n: int) -> dict[int, float]:
    """Class weights inversely proportional to class frequency (scikit-learn's "balanced")."""
    counts = np.bincount(labels, minlength=n).astype("float64")
    return {i: float(len(labels) / (n * c)) if c else 0.0 for i, c in enumerate(counts)}


def one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype="float32")[labels]


EAGER_ROWS = 8192  # rows per eager call of classifier_logs


def classifier_loss(label_smoothing: float) -> Any:
    import keras

    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def classifier_metrics(num_classes: int) -> list[Any]:
    """The metrics every phase reports (history, events, model card), fresh objects."""
    import keras

    return [keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top_k_accuracy")]


def compile_classifier(model: Any, learning_rate: float, label_smoothing: float,
                       num_classes: int) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=classifier_loss(label_smoothing), metrics=classifier_metrics(num_classes))


def classifier_logs(model: Any, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None,
                    label_smoothing: float) -> dict[str, float]:
    """What `model.evaluate(x, y, sample_weight=...)` reports for a classifier compiled by
    compile_classifier (the weighted loss and the unweighted classifier_metrics), from
    eager calls on all of `x`, and for `model` compiled or not (a fitted head is not):
    evaluate traces a test function first, a fifth of a second of a fitted head's phase 1
    (bench/finetune.py), for rows a Dense layer reads thousands at a time."""
    loss, metrics = classifier_loss(label_smoothing), classifier_metrics(y.shape[1])
    loss_sum = 0.0
    for start in range(0, len(x), EAGER_ROWS):
        rows = slice(start, start + EAGER_ROWS)
        weights = None if sample_weight is None else sample_weight[rows]
        probabilities = model(x[rows], training=False)
        # the loss is a mean over the rows of weight x loss, as evaluate reduces it
        loss_sum += float(loss(y[rows], probabilities, sample_weight=weights)) * len(y[rows])
        for metric in metrics:  # unweighted: compile's `metrics`, not `weighted_metrics`
            metric.update_state(y[rows], probabilities)
    return {"loss": loss_sum / len(x), **{m.name: float(m.result()) for m in metrics}}


def _callback_classes() -> tuple[type, type, type, type, type]:
    import keras

    class FiniteGuard(keras.callbacks.Callback):
        """Fails the run on a non-finite loss or metric, before anything saves the epoch,
        so a NaN model is never checkpointed, saved or served."""

        def __init__(self, phase: int):
            super().__init__()
            self.phase = phase

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            values = {k: float(v) for k, v in (logs or {}).items()}
            bad = sorted(k for k, v in values.items() if not math.isfinite(v))
            if bad:
                raise NonFiniteError(
                    f"phase {self.phase} epoch {epoch + 1}: {', '.join(bad)} became "
                    f"{values[bad[0]]} (training diverged); lower --learning-rate")

    class EpochEvents(keras.callbacks.Callback):
        """One event per epoch, once it is checkpointed (and a stop check between
        batches)."""

        def __init__(self, emit: Callable[[Event], None], phase: int, total: int,
                     should_stop: Callable[[], bool] | None):
            super().__init__()
            self.emit, self.phase, self.total, self.should_stop = emit, phase, total, should_stop
            self.started = time.perf_counter()

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            values = {k: float(v) for k, v in (logs or {}).items()}
            self.emit({"event": "epoch", "phase": self.phase, "epoch": epoch + 1,
                       "epochs": self.total,
                       "seconds": round(time.perf_counter() - self.started, 2),
                       **{k: round(v, 5) for k, v in values.items()}})
            if self.should_stop is not None and self.should_stop():
                self.model.stop_training = True

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self.should_stop is not None and self.should_stop():
                self.model.stop_training = True

    class StepEvents(keras.callbacks.Callback):
        """Progress within an epoch, at most once every `every_s` seconds (only where
        training runs batch by batch: phase 2 and uncached phase 1)."""

        def __init__(self, emit: Callable[[Event], None], every_s: float = 1.0):
            super().__init__()
            self.emit, self.every_s = emit, every_s
            self.last = time.monotonic()
            self.epoch = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            now = time.monotonic()
            if now - self.last < self.every_s:
                return
            self.last = now
            loss = (logs or {}).get("loss")
            self.emit({"event": "step", "epoch": self.epoch, "step": batch + 1,
                       "steps": (self.params or {}).get("steps") or 0,
                       "loss": float(loss) if loss is not None else 0.0})

    class Checkpoint(keras.callbacks.Callback):
        """Save the model being trained (with its optimizer) and where we are, every epoch."""

        def __init__(self, trainer: Trainer, phase: int):
            super().__init__()
            self.trainer, self.phase = trainer, phase

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            history = self.trainer.state.setdefault("history", {})
            for key, value in (logs or {}).items():
                history.setdefault(key, []).append(float(value))
            self.trainer.save_checkpoint(self.model, self.phase, epoch + 1)

    class KeepBest(keras.callbacks.Callback):
        """Early stopping on val_loss, and the best epoch's weights restored at the end."""

        def __init__(self, patience: int):
            super().__init__()
            self.patience, self.best, self.best_weights, self.wait = patience, np.inf, None, 0
            self.stopped_early = False

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            loss = (logs or {}).get("val_loss")
            if loss is None:
                return
            if loss < self.best:
                self.best, self.best_weights, self.wait = loss, self.model.get_weights(), 0
            else:
                self.wait += 1
                if self.patience and self.wait >= self.patience:
                    self.model.stop_training = True
                    self.stopped_early = True

        def on_train_end(self, logs: Any = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return FiniteGuard, EpochEvents, StepEvents, Checkpoint, KeepBest


class Trainer:
    """One fine-tune run's state, checkpoints, callbacks and result."""

    def __init__(self, spec: ModelSpec, out: Path, hp: HyperParameters, run: RunOptions,
                 identity: dict[str, Any]):
        self.spec, self.out, self.hp, self.run = spec, out, hp, run
        self.name = run.name or out.name
        self.checkpoints = out / "checkpoints"
        self.emit: Callable[[Event], None] = run.on_event or (lambda event: None)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.state = self._load_state(identity)
        self.keep_best: Any = None  # the KeepBest of the phase last trained
        self.phase1_val_loss: float | None = None  # of a head fitted to its optimum

    # --- where a run (re)starts ------------------------------------------------------------

    def _load_state(self, identity: dict[str, Any]) -> dict[str, Any]:
        if not self.run.resume:
            return {"identity": identity}
        path = self.checkpoints / STATE_FILE
        if not path.is_file():
            raise InvalidInputError(
                f"nothing to resume in {self.out}: no checkpoints/{STATE_FILE}; drop --resume")
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("identity") != identity:
            raise InvalidInputError(
                f"{self.out} holds a run with a different base, data or settings; use another "
                "--out or drop --resume")
        return dict(state)

    @property
    def done_phase(self) -> int:
        return int(self.state.get("phase", 0))

    @property
    def done_epoch(self) -> int:
        return int(self.state.get("epoch", 0))

    @property
    def phase1_done(self) -> bool:
        """Phase 1 is over and its best model is in checkpoints/phase1.keras."""
        return bool(self.state.get("phase1_done")) or self.done_phase == 2

    @property
    def phase1_start(self) -> int:
        return self.done_epoch if self.done_phase == 1 else 0

    def load_checkpoint(self, phase: int, compile: bool = True) -> Any:
        import keras

        return keras.saving.load_model(self.checkpoints / f"phase{phase}.keras", safe_mode=True,
                                       compile=compile)

    def save_checkpoint(self, model: Any, phase: int, epoch: int) -> None:
        """phase{N}.keras (with its optimizer) and state.json say where a resumed run starts;
        the model file is replaced whole, never left half-written."""
        tmp = self.checkpoints / f"phase{phase}.tmp.keras"
        model.save(tmp)
        tmp.replace(self.checkpoints / f"phase{phase}.keras")
        self.state.update(phase=phase, epoch=epoch)
        write_json(self.checkpoints / STATE_FILE, self.state)

    def finish_phase1(self, model: Any) -> None:
        """Phase 1 is over: its best model (restored by KeepBest) becomes the phase-1
        checkpoint that phase 2, also when resumed, starts from."""
        self.state["phase1_done"] = True
        self.state["phase1_val_loss"] = (self.phase1_val_loss if self.phase1_val_loss is not None
                                         else self.best_val_loss())
        self.save_checkpoint(model, 1, self.hp.epochs)

    def best_val_loss(self) -> float | None:
        best = getattr(self.keep_best, "best", None)
        return float(best) if best is not None and math.isfinite(best) else None

    # --- training --------------------------------------------------------------------------

    def callbacks(self, phase: int, total: int, steps: bool = True) -> list[Any]:
        import keras

        FiniteGuard, EpochEvents, StepEvents, Checkpoint, KeepBest = _callback_classes()
        self.keep_best = KeepBest(self.hp.patience)
        return [  # a diverged epoch fails before anything saves it; it is told once saved
            FiniteGuard(phase),
            self.keep_best,
            Checkpoint(self, phase),
            EpochEvents(self.emit, phase, total, self.run.should_stop),
            *([StepEvents(self.emit)] if steps else []),
            keras.callbacks.TensorBoard(str(self.out / "logs" / f"phase{phase}"),
                                        write_graph=False, profile_batch=0),
            *self.run.callbacks,
        ]

    def class_weights(self, labels: np.ndarray, n: int) -> dict[int, float] | None:
        return balanced_weights(labels, n) if self.hp.class_weights else None

    def fit_head(self, head: Any, x_train: np.ndarray, y_train: np.ndarray,
                 x_val: np.ndarray, y_val: np.ndarray, weights: dict[int, float] | None,
                 start: int) -> Any:
        """Phase 1 on cached features. By default the head is fitted to its optimum as the
        convex problem it is (zoo.finetuning.head_fit: L-BFGS, L2 chosen on validation), so
        no epoch budget decides whether a small data set converges. With fit_head off, it
        trains epoch by epoch: one compiled loop an epoch (zoo.finetuning.head), or
        `model.fit` when the caller passed callbacks of their own (they may want batches).
        Only then is the head compiled: a fitted head's checkpoint carries no optimizer,
        which it never had (an unbuilt one warned on every load)."""
        labels = y_train.argmax(axis=1)
        sample_weight = (None if weights is None else
                         np.array([weights[int(y)] for y in labels], dtype="float32"))
        if self.hp.fit_head:
            if start >= self.hp.epochs and "head_fit" in self.state:
                # Fitted and checkpointed before the run stopped: `head` is that checkpoint,
                # and refitting would only repeat the fit and its history entry.
                self.phase1_val_loss = self.state["history"]["val_loss"][-1]
                return head
            return self._fit_to_optimum(head, x_train, y_train, x_val, y_val, sample_weight)
        from zoo.finetuning.head import fit_on_arrays

        if not head.compiled:  # a new head; a resumed one keeps its optimizer's state
            compile_classifier(head, self.hp.learning_rate, self.hp.label_smoothing,
                               y_train.shape[1])
        callbacks = self.callbacks(1, self.hp.epochs, steps=False)
        if self.run.callbacks:
            head.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=self.hp.epochs,
                     initial_epoch=start, batch_size=self.hp.batch_size, class_weight=weights,
                     shuffle=True, verbose=0, callbacks=callbacks)
        else:
            fit_on_arrays(head, x_train, y_train, validation_data=(x_val, y_val),
                          epochs=self.hp.epochs, initial_epoch=start,
                          batch_size=self.hp.batch_size, sample_weight=sample_weight,
                          seed=self.hp.seed, callbacks=callbacks)
        return head

    def _fit_to_optimum(self, head: Any, x_train: np.ndarray, y_train: np.ndarray,
                        x_val: np.ndarray, y_val: np.ndarray,
                        sample_weight: np.ndarray | None) -> Any:
        """The head's Dense layer set to the optimum; one "head" event with the fit and the
        metrics an epoch would report; phase 1 checkpointed as finished."""
        from zoo.finetuning.head_fit import fit_head

        started = time.perf_counter()
        fit = fit_head(x_train, y_train.argmax(axis=1), x_val, y_val.argmax(axis=1),
                       num_classes=y_train.shape[1], sample_weight=sample_weight,
                       label_smoothing=self.hp.label_smoothing, dropout=self.hp.dropout,
                       seed=self.hp.seed)
        head.get_layer("predictions").set_weights(
            [w.astype("float32") for w in fit.weights()])
        smoothing = self.hp.label_smoothing
        logs = classifier_logs(head, x_train, y_train, sample_weight, smoothing)
        logs.update({f"val_{k}": v for k, v in
                     classifier_logs(head, x_val, y_val, None, smoothing).items()})
        bad = sorted(k for k, v in logs.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteError(f"phase 1: the fitted head's {', '.join(bad)} is not finite; "
                                 "the features hold values too large to fit on")
        info = {"method": "l-bfgs", "l2": fit.l2, "selection": fit.selection,
                "iterations": fit.iterations, "converged": fit.converged,
                "gradient_norm": fit.gradient_norm,
                "seconds": round(time.perf_counter() - started, 2)}
        self.state["head_fit"] = info
        history = self.state.setdefault("history", {})
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        self.phase1_val_loss = logs.get("val_loss")
        self._log_scalars(1, self.hp.epochs, logs)
        self.emit({"event": "head", "phase": 1, "epoch": self.hp.epochs,
                   "epochs": self.hp.epochs, **info,
                   **{k: round(v, 5) for k, v in logs.items()}})
        self.save_checkpoint(head, 1, self.hp.epochs)
        return head

    def _log_scalars(self, phase: int, step: int, logs: dict[str, float]) -> None:
        """TensorBoard scalars laid out as Keras's TensorBoard callback lays them out
        (logs/phaseN/{train,validation}, tags epoch_<metric>), for a phase with no epochs."""
        import tensorflow as tf

        for side, prefix in (("train", ""), ("validation", "val_")):
            writer = tf.summary.create_file_writer(str(self.out / "logs" / f"phase{phase}" / side))
            with writer.as_default():
                for key, value in logs.items():
                    if key.startswith(prefix) and (prefix or not key.startswith("val_")):
                        tf.summary.scalar(f"epoch_{key[len(prefix):]}", value, step=step)
            writer.close()

    def phase1_finished(self) -> bool:
        """Phase 1 ran all its epochs or stopped early (not stopped on request)."""
        return bool(self.phase1_val_loss is not None
                    or getattr(self.keep_best, "stopped_early", False)
                    or self.done_epoch >= self.hp.epochs)

    def phase2_improved(self) -> bool:
        """Whether phase 2's best validation loss beat phase 1's (ties keep phase 1)."""
        before = self.state.get("phase1_val_loss")
        after = self.best_val_loss()
        if before is None or after is None:
            return True
        improved = after < before
        if not improved:
            self.emit({"event": "phase_kept", "phase1_val_loss": before,
                       "phase2_val_loss": after})
        self.state["phase2_kept"] = improved
        return improved

    def stopped(self) -> bool:
        return bool(self.run.should_stop and self.run.should_stop())

    def stop_if_asked(self) -> None:
        if self.stopped():
            self.emit({"event": "stopped", "epoch": self.done_epoch})
            raise InterruptedError("fine-tune stopped on request; resume with resume=True")

    # --- the end of a run ------------------------------------------------------------------

    def finish(self, served: Any, probs: np.ndarray, val_labels: np.ndarray, classes: list[str],
               *, task: str, inputs: dict[str, Any], data: dict[str, Any],
               training: dict[str, Any],
               export: Callable[[Path], Path | None] | None = None) -> FineTuneResult:
        """Measure `served` on the validation set, write the model folder and its reports,
        record it, and say so."""
        if not np.isfinite(probs).all():
            raise NonFiniteError("the trained model gives non-finite scores on the validation "
                                 "data; lower --learning-rate")
        out = self.out
        metrics = classification_metrics(probs, val_labels, classes)
        history = self.state.get("history", {})
        (out / "plots").mkdir(exist_ok=True)
        plot_history(history, out / "plots" / "training_curves.png")
        plot_confusion(metrics["confusion_matrix"], classes,
                       out / "plots" / "confusion_matrix.png")
        model_path = model_dir.save_keras(served, out)
        model_dir.write_labels(out, classes)
        epochs_run = len(history.get("loss", []))
        meta: dict[str, Any] = {
            "format_version": model_dir.FORMAT_VERSION,
            "name": self.name,
            "task": task,
            "base": self.spec.name,
            "base_family": self.spec.family,
            "base_params": self.spec.params,
            "base_weights": self.spec.weights_tag,
            "labels": classes,
            "input": inputs,
            "hyperparameters": self.hp.to_dict(),
            "data": data,
            "training": {**training, "epochs_run": epochs_run,
                         **({"head_fit": self.state["head_fit"]}
                            if "head_fit" in self.state else {})},
            "metrics": {k: v for k, v in metrics.items()
                        if k not in ("per_class", "confusion_matrix")},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        write_json(out / model_dir.METRICS_FILE, metrics)
        write_json(out / "history.json", history)
        (out / "README.md").write_text(model_card(meta, metrics), encoding="utf-8")
        exported = export(out) if export is not None else None
        model_dir.write_meta(out, meta)  # last: its presence marks a complete model
        if self.run.record:
            model_dir.record(out, self.name)
        self.emit({"event": "done", "output_dir": str(out), "accuracy": metrics["accuracy"],
                   "epochs_run": epochs_run})
        return FineTuneResult(out, model_path, metrics, history, classes, self.spec.name,
                              epochs_run, bool(training.get("cached_features")), exported, meta)


__all__ = ["FineTuneResult", "RunOptions", "STATE_FILE", "Trainer",
           "balanced_weights", "checkpoint_epoch", "compile_classifier", "one_hot",
           "prepare_output"]
