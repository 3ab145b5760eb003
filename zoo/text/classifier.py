"""Fine-tuned text classifiers: load one and classify texts with it.

A text classifier folder (zoo.json task "text-classification") is one of two kinds, named
by zoo.json's `input.kind`:

- "embedding" (a head only): the base's encoder, shared through zoo.text.encoder's cache,
  embeds each text and model.keras, the head, classifies the embedding;
- "tokens" (end-to-end, from a fine-tune with `fine_tune_layers` > 0): model.keras takes
  `token_ids` and `padding_mask` and holds its own fine-tuned backbone, the layer named
  `BACKBONE`, followed by zoo.text.layers' pooling and the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo import model_dir
from zoo.errors import InvalidInputError
from zoo.hub.fetch import fetch_weights
from zoo.predictions import Prediction, resolve_top_k, top_predictions
from zoo.refs import ModelRef, resolve
from zoo.text.encoder import TextEncoder, load_encoder

BACKBONE = "backbone"  # the backbone's layer name in an end-to-end text classifier


def load_end_to_end(folder: Path) -> Any:
    """An end-to-end classifier's model.keras, its registered layers imported first."""
    import keras_hub  # noqa: F401  (registers the backbone classes)

    import zoo.text.layers  # noqa: F401  (registers the pooling layers)

    return model_dir.load_keras(folder)


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
    def load(cls, model: str | Path | ModelRef) -> TextClassifier:
        """A fine-tuned text classifier's folder or recorded name, or a resolved ref."""
        ref = resolve(model)
        if not ref.is_text_classifier:
            hint = ("it is a text backbone: fine-tune a classifier from it first"
                    if ref.spec.is_text and not ref.is_folder else
                    "classify images with `zoo predict MODEL IMAGE...`")
            raise InvalidInputError(f"{ref.name} is not a fine-tuned text classifier; {hint}")
        assert ref.folder is not None and ref.labels is not None
        if not ref.takes_tokens:
            return cls(ref.name, load_encoder(ref.spec), model_dir.load_keras(ref.folder),
                       ref.labels)
        network = load_end_to_end(ref.folder)
        encoder = TextEncoder(ref.spec, fetch_weights(ref.spec),
                              backbone=network.get_layer(BACKBONE))
        return cls(ref.name, encoder, network, ref.labels, tokens=True)

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

    def classify(self, texts: Sequence[str], top_k: int | None = None) -> list[list[Prediction]]:
        """Top-k predictions per text; `top_k` None means min(5, classes), and a larger one
        is clamped to the number of classes."""
        k = resolve_top_k(top_k, len(self.labels))
        probs, _ = self.probabilities(texts)
        return [top_predictions(row, self.labels, k) for row in probs]
