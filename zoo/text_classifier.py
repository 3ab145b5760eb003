"""Text classifiers on pretrained keras-hub backbones: data, training, loading.

`zoo.finetune(text_model, "data.csv", out)` lands here. The backbone is frozen: each
text is embedded once with the model's own pooling (zoo.text), and a head
(standardisation, dropout, dense) is trained on the cached embeddings, which takes
seconds on a CPU. The output directory has the same layout as an image fine-tune
(model.keras holds the head; zoo.json names the base whose embeddings it reads).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from zoo import finetuned
from zoo.datasets import _stratified_split
from zoo.errors import InvalidInputError
from zoo.spec import TEXT_CLASSIFICATION, ModelSpec

log = logging.getLogger("zoo")
Event = dict[str, Any]


def read_text_dataset(path: str | Path) -> tuple[list[str], list[str]]:
    """(texts, labels) from a CSV or JSONL file with `text` and `label` columns."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise InvalidInputError(f"text dataset {source} does not exist (give a .csv or .jsonl file)")
    raw = source.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad_line = raw[: e.start].count(b"\n") + 1
        raise InvalidInputError(f"{source} line {bad_line} is not valid UTF-8; save the file as UTF-8") from None
    if not content.strip():
        raise InvalidInputError(f"{source} is empty; expected rows of text,label")
    rows: list[tuple[int, Any, Any]] = []
    if source.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{source} line {number} is not JSON: {e.msg}") from None
            if not isinstance(item, dict) or "text" not in item or "label" not in item:
                raise InvalidInputError(f"{source} line {number} needs \"text\" and \"label\" fields")
            rows.append((number, item["text"], item["label"]))
    else:
        reader = csv.DictReader(io.StringIO(content))
        columns = set(reader.fieldnames or [])
        if not {"text", "label"} <= columns:
            raise InvalidInputError(
                f"{source} needs columns `text` and `label`; it has {', '.join(sorted(columns)) or 'none'}")
        rows = [(number, row["text"], row["label"]) for number, row in enumerate(reader, start=2)]
    texts, labels = [], []
    for number, text, label in rows:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"{source} line {number}: the text is empty")
        if label is None or not str(label).strip():
            raise InvalidInputError(f"{source} line {number}: the label is empty")
        texts.append(text)
        labels.append(str(label).strip())
    if not texts:
        raise InvalidInputError(f"{source} has no rows; expected text,label")
    if len(set(labels)) < 2:
        raise InvalidInputError(
            f"{source} has 1 label ({labels[0]}); a classifier needs at least 2")
    return texts, labels


def _head(dim: int, classes: int, dropout: float, mean: np.ndarray, variance: np.ndarray) -> Any:
    import keras

    return keras.Sequential(
        [
            keras.Input((dim,), name="embedding"),
            keras.layers.Normalization(mean=mean, variance=variance),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(classes, activation="softmax", name="predictions"),
        ],
        name="text_head",
    )


def finetune_text(
    spec: ModelSpec, data: str | Path, out: str | Path, *, epochs: int = 10,
    fine_tune_layers: int = 0, batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0,
    callbacks: Sequence[Any] | None = None, val_data: str | Path | None = None,
    val_split: float = 0.2, label_smoothing: float = 0.0, class_weights: bool = False,
    patience: int = 3, dropout: float = 0.2, resume: bool = False, name: str | None = None,
    on_event: Callable[[Event], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Any:
    import keras

    from zoo import finetuning
    from zoo.report import (
        classification_metrics,
        model_card,
        plot_confusion,
        plot_history,
        write_json,
    )
    from zoo.text import load_encoder

    if fine_tune_layers:
        raise InvalidInputError(
            "fine-tuning the layers of a text backbone (--fine-tune-layers) is not available "
            "yet; drop it to train a classifier head on the frozen backbone's embeddings")
    hp = finetuning.HyperParameters(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, dropout=dropout,
        label_smoothing=label_smoothing, class_weights=class_weights, patience=patience,
        val_split=val_split, seed=seed)
    hp.validate()
    if not 0.0 <= val_split < 1.0:
        raise InvalidInputError(f"val_split must be in [0, 1), got {val_split}")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file; give a folder")
    emit = on_event or (lambda event: None)
    texts, names = read_text_dataset(data)
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    if val_data is not None:
        val_texts, val_names = read_text_dataset(val_data)
        unknown = sorted(set(val_names) - set(classes))
        if unknown:
            raise InvalidInputError(f"validation data has labels the training data lacks: {', '.join(unknown)}")
        train_idx = np.arange(len(texts))
        val_idx = np.arange(len(texts), len(texts) + len(val_texts))
        texts = texts + val_texts
        labels = np.concatenate([labels, [index[n] for n in val_names]]).astype(np.int64)
    else:
        train_idx, val_idx = _stratified_split(labels, val_split, seed)
    if len(val_idx) == 0:
        raise InvalidInputError("no validation texts; raise --val-split or pass --val-data")
    emit({"event": "data", "classes": classes, "train": int(len(train_idx)),
          "val": int(len(val_idx)), "skipped": []})

    encoder = load_encoder(spec.name)
    started = time.perf_counter()
    embedded = encoder.encode(texts, batch_size=64)
    if embedded.truncated:
        log.warning("%d text(s) longer than %d tokens were truncated", len(embedded.truncated),
                    encoder.max_length)
    emit({"event": "features", "seconds": round(time.perf_counter() - started, 2),
          "shape": list(embedded.vectors.shape), "truncated": len(embedded.truncated)})
    x = embedded.vectors
    x_train, x_val = x[train_idx], x[val_idx]
    n = len(classes)
    y_train = np.eye(n, dtype="float32")[labels[train_idx]]
    y_val = np.eye(n, dtype="float32")[labels[val_idx]]

    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    identity = {"base": spec.name, "data": str(Path(data).resolve()), "classes": classes,
                "hyperparameters": asdict(hp)}
    state = finetuning._load_state(out, resume, identity)
    start = state.get("epoch", 0) if state.get("phase") == 1 else 0
    keras.utils.set_random_seed(seed)
    EpochEvents, Checkpoint, KeepBest = finetuning._callbacks_module()
    if start:
        head = keras.saving.load_model(out / "checkpoints" / "phase1.keras", safe_mode=True)
    else:
        head = _head(x.shape[1], n, dropout, x_train.mean(0), x_train.var(0) + 1e-6)
        finetuning._compile(head, learning_rate, label_smoothing, n)
    emit({"event": "phase", "phase": 1, "cached_features": True, "resumed_from_epoch": start})
    weights = finetuning._balanced_weights(labels[train_idx], n) if class_weights else None
    head.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, initial_epoch=start,
             batch_size=batch_size, class_weight=weights, shuffle=True, verbose=0,
             callbacks=[KeepBest(patience), Checkpoint(out / "checkpoints", 1, state),
                        EpochEvents(emit, 1, epochs, should_stop),
                        keras.callbacks.TensorBoard(str(out / "logs" / "phase1"),
                                                    write_graph=False, profile_batch=0),
                        *(callbacks or [])])
    if should_stop and should_stop():
        emit({"event": "stopped", "epoch": state.get("epoch", 0)})
        raise InterruptedError("fine-tune stopped on request; resume with resume=True")

    # An uncompiled functional copy: the saved file carries no optimizer state.
    embedding = keras.Input((x.shape[1],), name="embedding")
    served = keras.Model(embedding, head(embedding), name="text_classifier")
    probs = np.asarray(served(x_val, training=False))
    metrics = classification_metrics(probs, labels[val_idx], classes)
    history = state.get("history", {})
    (out / "plots").mkdir(exist_ok=True)
    plot_history(history, out / "plots" / "training_curves.png")
    plot_confusion(metrics["confusion_matrix"], classes, out / "plots" / "confusion_matrix.png")
    tmp = out / "model.tmp.keras"
    served.save(tmp)
    tmp.replace(out / finetuned.MODEL_FILE)
    (out / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    import datetime as dt

    counts = np.bincount(labels, minlength=n)
    meta: dict[str, Any] = {
        "format_version": finetuned.FORMAT_VERSION, "name": name or out.name,
        "task": TEXT_CLASSIFICATION, "base": spec.name, "base_family": spec.family,
        "base_params": spec.params, "base_weights": spec.weights_tag, "labels": classes,
        "input": {"max_length": encoder.max_length, "preprocessing": spec.input.preprocessing,
                  "size": [encoder.dim, 1], "embedding": "normalized sentence embedding"},
        "hyperparameters": {**asdict(hp), "fine_tune_lr_factor": 0.1, "augment": False},
        "data": {"source": str(data), "train_examples": int(len(train_idx)),
                 "val_examples": int(len(val_idx)), "skipped": 0,
                 "truncated": len(embedded.truncated),
                 "class_counts": {c: int(counts[i]) for i, c in enumerate(classes)}},
        "training": {"cached_features": True, "unfrozen_layers": 0,
                     "epochs_run": len(history.get("loss", []))},
        "metrics": {k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "metrics.json", metrics)
    write_json(out / "history.json", history)
    card = model_card(meta, metrics).replace("image.jpg", '--text "your text"')
    (out / "README.md").write_text(card, encoding="utf-8")
    write_json(out / finetuned.META_FILE, meta)
    finetuned.record(out, meta["name"])
    emit({"event": "done", "output_dir": str(out), "accuracy": metrics["accuracy"],
          "epochs_run": meta["training"]["epochs_run"]})
    return finetuning.FineTuneResult(out, out / finetuned.MODEL_FILE, metrics, history, classes,
                                     spec.name, meta["training"]["epochs_run"], True, None, meta)


class TextClassifier:
    """A fine-tuned text classifier: the base's encoder, then the trained head."""

    def __init__(self, name: str, encoder: Any, model: Any, labels: Sequence[str]):
        import tensorflow as tf

        self.name, self.encoder, self.model, self.labels = name, encoder, model, list(labels)
        self._call = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, encoder.dim), tf.float32)],
        )

    @classmethod
    def load(cls, name_or_dir: str | Path) -> TextClassifier:
        from zoo.text import load_encoder

        folder = finetuned.resolve(name_or_dir)
        if folder is None:
            raise InvalidInputError(f"{name_or_dir} is not a fine-tuned text classifier")
        meta = finetuned.read_meta(folder)
        if meta.get("task") != TEXT_CLASSIFICATION:
            raise InvalidInputError(f"{name_or_dir} is a {meta.get('task')} model, not a text classifier")
        return cls(meta["name"], load_encoder(meta["base"]), finetuned.load(folder), meta["labels"])

    def probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """(texts, classes) probabilities and the indices of texts that were truncated."""
        embedded = self.encoder.encode(texts)
        return np.asarray(self._call(embedded.vectors)), list(embedded.truncated)

    def classify(self, texts: Sequence[str], top_k: int = 5) -> list[list[Any]]:
        from zoo.prediction import Prediction, check_top_k

        check_top_k(top_k, len(self.labels))
        probs, _ = self.probabilities(texts)
        order = np.argsort(-probs, axis=1)[:, :top_k]
        return [[Prediction(self.labels[i], float(row[i]), int(i)) for i in idx]
                for row, idx in zip(probs, order, strict=True)]
