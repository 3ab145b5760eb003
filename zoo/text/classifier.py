"""Text classifiers on pretrained keras-hub backbones: data, training, loading.

`zoo.finetune(text_model, "data.csv", out)` lands here, and trains the way the image
path does (zoo.finetuning.image):

1. Phase 1: each text is embedded once with the model's own pooling (zoo.text.encoder), and a
   head (standardisation, dropout, dense) is trained on the cached embeddings, which
   takes seconds on a CPU. model.keras is then the head alone (zoo.json: input kind
   "embedding"), and the base's shared encoder embeds every text it classifies.
2. Phase 2, with `fine_tune_layers=K`: one Keras model, `token_ids` and `padding_mask`
   -> a copy of the backbone -> the same pooling as a Keras layer (zoo.text.layers) ->
   the phase-1 head, gives exactly phase 1's probabilities before it trains. The top K
   transformer layers are unfrozen (embeddings and lower layers stay frozen) and it
   trains `epochs` more epochs at learning_rate x 0.1 on the texts tokenized to one
   fixed length (dropout on, as keras-hub's and Hugging Face's classifiers fine-tune).
   model.keras is then this end-to-end model (input kind "tokens").

Both phases checkpoint every epoch (checkpoints/phase{1,2}.keras, state.json), so
`resume=True` continues where a run stopped; `should_stop` ends a run after a batch. The
output directory has the same layout as an image fine-tune; `TextClassifier` loads both
kinds.
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
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo import model_dir
from zoo.errors import InvalidInputError
from zoo.finetuning.image_data import _stratified_split
from zoo.hub.spec import TEXT_CLASSIFICATION, ModelSpec

if TYPE_CHECKING:
    from zoo.text.encoder import TextEncoder

log = logging.getLogger("zoo")
Event = dict[str, Any]
BACKBONE = "backbone"  # the backbone's layer name in an end-to-end text classifier


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




def end_to_end_model(encoder: TextEncoder, head: Any) -> Any:
    """token_ids, padding_mask -> a copy of the encoder's backbone -> pooling -> `head`.

    The pooling (and L2 normalisation) is `zoo.text.layers.SentenceEmbedding`, computed as
    `encoder.encode` computes the embeddings the head was trained on, so before any
    training the model gives what `head(encoder.encode(texts).vectors)` gives. The
    backbone is a copy named `BACKBONE`: training it leaves the encoder, which zoo.text.encoder
    caches for every embedding this process makes, as it was.
    """
    import keras

    from zoo.text.layers import SegmentIds, SentenceEmbedding

    source = encoder.backbone
    backbone = source.__class__.from_config({**source.get_config(), "name": BACKBONE})
    backbone.set_weights(source.get_weights())
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    feed = {"token_ids": token_ids, "padding_mask": padding_mask}
    if isinstance(backbone.input, dict) and "segment_ids" in backbone.input:
        feed["segment_ids"] = SegmentIds(name="zero_segment_ids")(token_ids)
    outputs = backbone(feed)
    hidden = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    embedding = SentenceEmbedding(encoder.pooling, normalize=True, name="sentence_embedding")(
        hidden, padding_mask)
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, head(embedding),
                       name="text_classifier")


def unfreeze_top(backbone: Any, layers: int) -> int:
    """Make the top `layers` transformer layers of a keras-hub backbone trainable and freeze
    everything else in it (embeddings, lower layers, the unused pooler). Returns how many
    were unfrozen: `layers`, or the backbone's depth if that is smaller.

    keras-hub backbones do not save their inner layers' `trainable` flags, so this is
    applied again to a model loaded from a checkpoint.
    """
    blocks = list(backbone.transformer_layers)
    count = min(layers, len(blocks))
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = False
    for layer in blocks[len(blocks) - count:]:
        layer.trainable = True
    return count


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

    from zoo.finetuning import image as finetuning
    from zoo.finetuning.report import (
        classification_metrics,
        model_card,
        plot_confusion,
        plot_history,
        write_json,
    )
    from zoo.text.encoder import TextEncoder, load_encoder

    hp = finetuning.HyperParameters(
        epochs=epochs, fine_tune_layers=fine_tune_layers, batch_size=batch_size,
        learning_rate=learning_rate, dropout=dropout, label_smoothing=label_smoothing,
        class_weights=class_weights, patience=patience, val_split=val_split, seed=seed)
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

    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    identity = {"base": spec.name, "data": str(Path(data).resolve()), "classes": classes,
                "hyperparameters": asdict(hp)}
    state = finetuning._load_state(out, resume, identity)
    done_phase, done_epoch = state.get("phase", 0), state.get("epoch", 0)
    phase2 = hp.fine_tune_layers > 0
    # A run that goes on to phase 2 marks phase 1 finished (its best head saved), so a
    # resumed run never trains the head again.
    phase1_done = done_phase == 2 or bool(state.get("phase1_done"))
    n = len(classes)
    y_train = np.eye(n, dtype="float32")[labels[train_idx]]
    y_val = np.eye(n, dtype="float32")[labels[val_idx]]
    weights = finetuning._balanced_weights(labels[train_idx], n) if class_weights else None
    keras.utils.set_random_seed(seed)
    EpochEvents, Checkpoint, KeepBest = finetuning._callbacks_module()

    def fit_callbacks(phase: int, total: int) -> list[Any]:
        return [KeepBest(patience), Checkpoint(checkpoints, phase, state),
                EpochEvents(emit, phase, total, should_stop),
                keras.callbacks.TensorBoard(str(out / "logs" / f"phase{phase}"),
                                            write_graph=False, profile_batch=0),
                *(callbacks or [])]

    def stop_if_asked() -> None:
        if should_stop and should_stop():
            emit({"event": "stopped", "epoch": state.get("epoch", 0)})
            raise InterruptedError("fine-tune stopped on request; resume with resume=True")

    encoder = load_encoder(spec.name)

    def warn_truncated(cut: list[int]) -> None:
        if cut:
            log.warning("%d text(s) longer than %d tokens were truncated", len(cut),
                        encoder.max_length)

    truncated: list[int] | None = None
    x_val = None
    if not (phase1_done and phase2):  # the head trains on embeddings, or is measured on them
        started = time.perf_counter()
        embedded = encoder.encode(texts, batch_size=64)
        truncated = embedded.truncated
        warn_truncated(truncated)
        emit({"event": "features", "seconds": round(time.perf_counter() - started, 2),
              "shape": list(embedded.vectors.shape), "truncated": len(truncated)})
        x_train, x_val = embedded.vectors[train_idx], embedded.vectors[val_idx]

    emit({"event": "phase", "phase": 1, "cached_features": True,
          "resumed_from_epoch": done_epoch if done_phase == 1 else 0})
    if phase1_done:
        head = keras.saving.load_model(checkpoints / "phase1.keras", safe_mode=True)
    else:
        start = done_epoch if done_phase == 1 else 0
        if start:
            head = keras.saving.load_model(checkpoints / "phase1.keras", safe_mode=True)
        else:
            head = _head(encoder.dim, n, dropout, x_train.mean(0), x_train.var(0) + 1e-6)
            finetuning._compile(head, learning_rate, label_smoothing, n)
        head.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                 initial_epoch=start, batch_size=batch_size, class_weight=weights,
                 shuffle=True, verbose=0, callbacks=fit_callbacks(1, epochs))
        stop_if_asked()
        if phase2:
            tmp = checkpoints / "phase1.tmp.keras"
            head.save(tmp)  # the best epoch's weights, which KeepBest restored
            tmp.replace(checkpoints / "phase1.keras")
            state["phase1_done"] = True
            write_json(checkpoints / "state.json", state)

    unfrozen = 0
    if phase2:
        stop_if_asked()
        # One sequence length for every batch (the longest text, up to the model's
        # maximum), so training traces one graph.
        length = min(max(len(p) for p in encoder.tokenize(texts)) + 2, encoder.max_length)
        packed = encoder.pack(texts, length=length)
        if truncated is None:
            truncated = packed.truncated
            warn_truncated(truncated)
        tokens = {"token_ids": packed.token_ids, "padding_mask": packed.padding_mask}
        t_train = {k: v[train_idx] for k, v in tokens.items()}
        t_val = {k: v[val_idx] for k, v in tokens.items()}
        resumed = done_phase == 2
        if resumed:
            import keras_hub  # noqa: F401  (registers the backbone classes)

            import zoo.text.layers  # noqa: F401

            model = keras.saving.load_model(checkpoints / "phase2.keras", safe_mode=True,
                                            compile=False)
        else:
            model = end_to_end_model(encoder, head)
        unfrozen = unfreeze_top(model.get_layer(BACKBONE), hp.fine_tune_layers)
        rate = learning_rate * hp.fine_tune_lr_factor
        emit({"event": "phase", "phase": 2, "unfrozen_layers": unfrozen, "learning_rate": rate,
              "sequence_length": length, "resumed_from_epoch": done_epoch if resumed else 0})
        finetuning._compile(model, rate, label_smoothing, n)
        if resumed:  # the optimizer's state, for the trainable weights set just above
            model.optimizer.build(model.trainable_variables)
            model.load_weights(checkpoints / "phase2.keras")
        total = epochs * 2
        model.fit(t_train, y_train, validation_data=(t_val, y_val), epochs=total,
                  initial_epoch=done_epoch if resumed else epochs, batch_size=batch_size,
                  class_weight=weights, shuffle=True, verbose=0,
                  callbacks=fit_callbacks(2, total))
        stop_if_asked()
        # An uncompiled functional copy: the saved file carries no optimizer state.
        served = keras.Model(model.input, model.output, name="text_classifier")
        tuned = TextEncoder(spec, encoder.snapshot, backbone=served.get_layer(BACKBONE))
        classifier = TextClassifier(name or out.name, tuned, served, classes, tokens=True)
        probs, _ = classifier.probabilities([texts[i] for i in val_idx])
        inputs: dict[str, Any] = {
            "kind": model_dir.TOKENS, "max_length": encoder.max_length,
            "sequence_length": length, "preprocessing": spec.input.preprocessing,
            "pooling": encoder.pooling, "normalized": True,
            "tokens": "token_ids and padding_mask, int32: [CLS] word pieces [SEP] [PAD]..."}
    else:
        embedding = keras.Input((encoder.dim,), name="embedding")
        served = keras.Model(embedding, head(embedding), name="text_classifier")
        probs = np.asarray(served(x_val, training=False))
        inputs = {"kind": "embedding", "max_length": encoder.max_length,
                  "preprocessing": spec.input.preprocessing, "size": [encoder.dim, 1],
                  "embedding": "normalized sentence embedding"}
    assert truncated is not None

    metrics = classification_metrics(probs, labels[val_idx], classes)
    history = state.get("history", {})
    (out / "plots").mkdir(exist_ok=True)
    plot_history(history, out / "plots" / "training_curves.png")
    plot_confusion(metrics["confusion_matrix"], classes, out / "plots" / "confusion_matrix.png")
    tmp = out / "model.tmp.keras"
    served.save(tmp)
    tmp.replace(out / model_dir.MODEL_FILE)
    (out / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    import datetime as dt

    counts = np.bincount(labels, minlength=n)
    meta: dict[str, Any] = {
        "format_version": model_dir.FORMAT_VERSION, "name": name or out.name,
        "task": TEXT_CLASSIFICATION, "base": spec.name, "base_family": spec.family,
        "base_params": spec.params, "base_weights": spec.weights_tag, "labels": classes,
        "input": inputs,
        "hyperparameters": asdict(hp),
        "data": {"source": str(data), "train_examples": int(len(train_idx)),
                 "val_examples": int(len(val_idx)), "skipped": 0,
                 "truncated": len(truncated),
                 "class_counts": {c: int(counts[i]) for i, c in enumerate(classes)}},
        "training": {"cached_features": True, "unfrozen_layers": unfrozen,
                     "epochs_run": len(history.get("loss", []))},
        "metrics": {k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "metrics.json", metrics)
    write_json(out / "history.json", history)
    (out / "README.md").write_text(model_card(meta, metrics), encoding="utf-8")
    write_json(out / model_dir.META_FILE, meta)  # last: its presence marks a complete model
    model_dir.record(out, meta["name"])
    emit({"event": "done", "output_dir": str(out), "accuracy": metrics["accuracy"],
          "epochs_run": meta["training"]["epochs_run"]})
    return finetuning.FineTuneResult(out, out / model_dir.MODEL_FILE, metrics, history, classes,
                                     spec.name, meta["training"]["epochs_run"], True, None, meta)


class TextClassifier:
    """A fine-tuned text classifier, of one of the two kinds zoo.json's `input.kind` names.

    "embedding" (a head only): the base's encoder, shared through zoo.text.encoder's cache, embeds
    each text and model.keras, the head, classifies the embedding.
    "tokens" (end-to-end, from `fine_tune_layers` > 0): the base's tokenizer packs each
    text and model.keras, which holds its own fine-tuned backbone, classifies the tokens;
    `encoder` is a TextEncoder over that backbone (`takes_tokens` is True).
    """

    def __init__(self, name: str, encoder: TextEncoder, model: Any, labels: Sequence[str], *,
                 tokens: bool = False):
        import tensorflow as tf

        self.name, self.encoder, self.model, self.labels = name, encoder, model, list(labels)
        self.takes_tokens = tokens
        if tokens:
            self._call = tf.function(
                lambda ids, mask: model({"token_ids": ids, "padding_mask": mask}, training=False),
                input_signature=[tf.TensorSpec((None, None), tf.int32, name="token_ids"),
                                 tf.TensorSpec((None, None), tf.int32, name="padding_mask")],
                autograph=False,
            )
        else:
            self._call = tf.function(
                lambda x: model(x, training=False),
                input_signature=[tf.TensorSpec((None, encoder.dim), tf.float32)],
            )

    @classmethod
    def load(cls, name_or_dir: str | Path) -> TextClassifier:
        from zoo.hub.fetch import fetch_weights
        from zoo.hub.registry import get_spec
        from zoo.text.encoder import TextEncoder, load_encoder

        folder = model_dir.resolve(name_or_dir)
        if folder is None:
            raise InvalidInputError(f"{name_or_dir} is not a fine-tuned text classifier")
        meta = model_dir.read_meta(folder)
        if meta.get("task") != TEXT_CLASSIFICATION:
            raise InvalidInputError(f"{name_or_dir} is a {meta.get('task')} model, not a text classifier")
        if not model_dir.takes_tokens(meta):
            return cls(meta["name"], load_encoder(meta["base"]), model_dir.load(folder),
                       meta["labels"])
        model = model_dir.load(folder)
        spec = get_spec(meta["base"])
        encoder = TextEncoder(spec, fetch_weights(spec.name), backbone=model.get_layer(BACKBONE))
        return cls(meta["name"], encoder, model, meta["labels"], tokens=True)

    def probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """(texts, classes) probabilities and the indices of texts that were truncated."""
        if not self.takes_tokens:
            embedded = self.encoder.encode(texts)
            return np.asarray(self._call(embedded.vectors)), list(embedded.truncated)
        batches, truncated = self.encoder.pack_batches(texts)
        probs = np.empty((sum(len(rows) for rows, _ in batches), len(self.labels)), np.float32)
        for rows, packed in batches:
            probs[rows] = np.asarray(self._call(packed.token_ids, packed.padding_mask))
        return probs, truncated

    def classify(self, texts: Sequence[str], top_k: int = 5) -> list[list[Any]]:
        from zoo.vision.classifier import Prediction, check_top_k

        check_top_k(top_k, len(self.labels))
        probs, _ = self.probabilities(texts)
        order = np.argsort(-probs, axis=1)[:, :top_k]
        return [[Prediction(self.labels[i], float(row[i]), int(i)) for i in idx]
                for row, idx in zip(probs, order, strict=True)]
