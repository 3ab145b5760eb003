"""Fine-tune a text classifier on a pretrained keras-hub backbone.

`zoo.finetune(text_model, "data.csv", out)` lands here, and trains the way the image
front does, on the shared core (zoo.finetuning.trainer):

1. Phase 1: each text is embedded once with the model's own pooling (zoo.text.encoder),
   and a head (dropout, dense) is fitted on the cached unit-length embeddings, which takes
   seconds on a CPU. model.keras is then the head alone (zoo.json: input kind
   "embedding"), and the base's shared encoder embeds every text it classifies.
2. Phase 2, with `fine_tune_layers=K`: one Keras model, `token_ids` and `padding_mask`
   -> a copy of the backbone -> the same pooling as a Keras layer (zoo.text.layers) ->
   the phase-1 head, gives exactly phase 1's probabilities before it trains. The top K
   transformer layers are unfrozen (embeddings and lower layers stay frozen) and it
   trains `epochs` more epochs at learning_rate x fine_tune_lr_factor on the texts
   tokenized to one fixed length (dropout on, as keras-hub's and Hugging Face's
   classifiers fine-tune). model.keras is then this end-to-end model (input kind
   "tokens"), which zoo.text.classifier loads.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from zoo import model_dir
from zoo.errors import InvalidInputError
from zoo.finetuning.hyperparameters import HyperParameters
from zoo.finetuning.splits import stratified_split
from zoo.finetuning.trainer import (
    FineTuneResult,
    RunOptions,
    Trainer,
    compile_classifier,
    one_hot,
    prepare_output,
)
from zoo.hub.spec import TEXT_CLASSIFICATION, ModelSpec
from zoo.text.classifier import BACKBONE, TextClassifier
from zoo.text.data import read_text_dataset
from zoo.text.encoder import TextEncoder, load_encoder

log = logging.getLogger("zoo")


def text_head(dim: int, classes: int, dropout: float) -> Any:
    """Dropout and a softmax over the unit-length sentence embedding as it is: no per-dimension
    standardisation, which, estimated from a few dozen examples, inflates the dimensions that
    barely vary (fitted heads on it scored 0.74 held-out where LogisticRegression on the
    embeddings scored 0.94)."""
    import keras

    return keras.Sequential(
        [
            keras.Input((dim,), name="embedding"),
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


def finetune_texts(spec: ModelSpec, data: str | Path, out: str | Path, hp: HyperParameters,
                   run: RunOptions) -> FineTuneResult:
    """Fine-tune a classifier on registry text model `spec`; write a Zoo model folder."""
    import keras

    folder = prepare_output(out, run.resume)
    texts, names = read_text_dataset(data)
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    if run.val_data is not None:
        val_texts, val_names = read_text_dataset(run.val_data)
        unknown = sorted(set(val_names) - set(classes))
        if unknown:
            raise InvalidInputError(
                f"validation data has labels the training data lacks: {', '.join(unknown)}")
        train_idx = np.arange(len(texts))
        val_idx = np.arange(len(texts), len(texts) + len(val_texts))
        texts = texts + val_texts
        labels = np.concatenate([labels, [index[n] for n in val_names]]).astype(np.int64)
    else:
        train_idx, val_idx = stratified_split(labels, hp.val_split, hp.seed)
    if len(val_idx) == 0:
        raise InvalidInputError("no validation texts; raise --val-split or pass --val-data")
    emit = run.on_event or (lambda event: None)
    emit({"event": "data", "classes": classes, "train": int(len(train_idx)),
          "val": int(len(val_idx)), "skipped": []})
    identity = {"base": spec.name, "data": str(Path(data).resolve()), "classes": classes,
                "hyperparameters": hp.to_dict()}
    trainer = Trainer(spec, folder, hp, run, identity)
    n = len(classes)
    y_train, y_val = one_hot(labels[train_idx], n), one_hot(labels[val_idx], n)
    weights = trainer.class_weights(labels[train_idx], n)
    keras.utils.set_random_seed(hp.seed)
    encoder = load_encoder(spec)

    def warn_truncated(cut: list[int]) -> None:
        if cut:
            log.warning("%d text(s) longer than %d tokens were truncated", len(cut),
                        encoder.max_length)

    truncated: list[int] | None = None
    x_train = x_val = np.zeros((0, encoder.dim), np.float32)  # set below when phase 1 runs
    measured = False
    if not (trainer.phase1_done and hp.phase2):  # the head trains on embeddings, or is measured
        started = time.perf_counter()
        embedded = encoder.encode(texts, batch_size=64)
        truncated = embedded.truncated
        warn_truncated(truncated)
        trainer.emit({"event": "features", "seconds": round(time.perf_counter() - started, 2),
                      "shape": list(embedded.vectors.shape), "truncated": len(truncated)})
        x_train, x_val = embedded.vectors[train_idx], embedded.vectors[val_idx]
        measured = True

    start = trainer.phase1_start
    trainer.emit({"event": "phase", "phase": 1, "cached_features": True,
                  "resumed_from_epoch": start})
    if trainer.phase1_done:
        head = trainer.load_checkpoint(1)
    else:
        if start:
            head = trainer.load_checkpoint(1)
        else:
            head = text_head(encoder.dim, n, hp.dropout)
        head = trainer.fit_head(head, x_train, y_train, x_val, y_val, weights, start)
        trainer.stop_if_asked()
        if hp.phase2:
            trainer.finish_phase1(head)

    unfrozen = 0
    kept_phase1 = False
    if hp.phase2:
        trainer.stop_if_asked()
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
        resumed = trainer.done_phase == 2
        if resumed:
            import keras_hub  # noqa: F401  (registers the backbone classes)

            import zoo.text.layers  # noqa: F401

            model = trainer.load_checkpoint(2, compile=False)
        else:
            model = end_to_end_model(encoder, head)
        unfrozen = unfreeze_top(model.get_layer(BACKBONE), hp.fine_tune_layers)
        rate = hp.learning_rate * hp.fine_tune_lr_factor
        trainer.emit({"event": "phase", "phase": 2, "unfrozen_layers": unfrozen,
                      "learning_rate": rate, "sequence_length": length,
                      "resumed_from_epoch": trainer.done_epoch if resumed else 0})
        compile_classifier(model, rate, hp.label_smoothing, n)
        if resumed:  # the optimizer's state, for the trainable weights set just above
            model.optimizer.build(model.trainable_variables)
            model.load_weights(trainer.checkpoints / "phase2.keras")
        total = hp.epochs * 2
        model.fit(t_train, y_train, validation_data=(t_val, y_val), epochs=total,
                  initial_epoch=trainer.done_epoch if resumed else hp.epochs,
                  batch_size=hp.batch_size, class_weight=weights, shuffle=True, verbose=0,
                  callbacks=trainer.callbacks(2, total))
        trainer.stop_if_asked()
        if trainer.phase2_improved():
            # An uncompiled functional copy: the saved file carries no optimizer state.
            served = keras.Model(model.input, model.output, name="text_classifier")
            tuned = TextEncoder(spec, encoder.snapshot, backbone=served.get_layer(BACKBONE))
            classifier = TextClassifier(trainer.name, tuned, served, classes, tokens=True)
            probs, _ = classifier.probabilities([texts[i] for i in val_idx])
            inputs: dict[str, Any] = {
                "kind": model_dir.TOKENS, "max_length": encoder.max_length,
                "sequence_length": length, "preprocessing": spec.input.preprocessing,
                "pooling": encoder.pooling, "normalized": True,
                "tokens": "token_ids and padding_mask, int32: [CLS] word pieces [SEP] [PAD]..."}
        else:
            kept_phase1, unfrozen = True, 0
            head = trainer.load_checkpoint(1)
    if not hp.phase2 or kept_phase1:
        if not measured:
            x_val = encoder.encode([texts[i] for i in val_idx], batch_size=64).vectors
        embedding = keras.Input((encoder.dim,), name="embedding")
        served = keras.Model(embedding, head(embedding), name="text_classifier")
        probs = np.asarray(served(x_val, training=False))
        inputs = {"kind": "embedding", "max_length": encoder.max_length,
                  "preprocessing": spec.input.preprocessing, "size": [encoder.dim, 1],
                  "embedding": "normalized sentence embedding"}
    assert truncated is not None
    counts = np.bincount(labels, minlength=n)
    return trainer.finish(
        served, probs, labels[val_idx], classes, task=TEXT_CLASSIFICATION, inputs=inputs,
        data={"source": str(data), "train_examples": int(len(train_idx)),
              "val_examples": int(len(val_idx)), "skipped": 0, "truncated": len(truncated),
              "class_counts": {c: int(counts[i]) for i, c in enumerate(classes)}},
        training={"cached_features": True, "unfrozen_layers": unfrozen})
