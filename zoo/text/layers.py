"""The Keras layers that turn a keras-hub text backbone into an end-to-end classifier.

A text classifier fine-tuned past its head (`fine_tune_layers` > 0, see
zoo.text.classifier) is saved as one Keras model: `token_ids` and `padding_mask` ->
backbone -> `SentenceEmbedding` -> the head. These layers are registered under the
"zoo" package, so the `.keras` file loads in safe mode (no Lambda layers) once this
module and keras_hub are imported; `zoo.model_dir.load` imports both for such models.

Importing this module imports Keras.
"""

from __future__ import annotations

from typing import Any

import keras

from zoo.text.encoder import POOLING_MODES


@keras.saving.register_keras_serializable(package="zoo")
class SegmentIds(keras.layers.Layer):
    """All-zero segment ids shaped like `token_ids`: every text is one segment."""

    def call(self, token_ids: Any) -> Any:
        return keras.ops.zeros_like(token_ids)

    def compute_output_spec(self, token_ids: Any) -> Any:
        return keras.KerasTensor(token_ids.shape, dtype=token_ids.dtype)


@keras.saving.register_keras_serializable(package="zoo")
class SentenceEmbedding(keras.layers.Layer):
    """A backbone's token vectors -> one vector per text, as `zoo.text.encoder` embeds it.

    `mode` pools over the tokens the padding mask marks ("mean", "mean_sqrt_len", "max")
    or takes the first ([CLS]) token ("cls"); `normalize` then scales each vector to
    unit length. Computed as `zoo.text._Runner._forward` and `TextEncoder.encode` do,
    so a head trained on `encode`'s embeddings sees the same numbers.
    """

    def __init__(self, mode: str = "mean", normalize: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling mode must be one of {', '.join(POOLING_MODES)}, got {mode!r}")
        self.mode, self.normalize = mode, bool(normalize)

    def call(self, hidden: Any, padding_mask: Any) -> Any:
        ops = keras.ops
        if self.mode == "cls":
            pooled = hidden[:, 0]
        else:
            mask = ops.expand_dims(ops.cast(padding_mask, hidden.dtype), -1)
            if self.mode == "max":  # padding set to -1e9 first, as Sentence-Transformers does
                pooled = ops.max(hidden * mask + (1.0 - mask) * -1e9, axis=1)
            else:
                total = ops.sum(hidden * mask, axis=1)
                count = ops.maximum(ops.sum(mask, axis=1), 1e-9)
                pooled = total / (ops.sqrt(count) if self.mode == "mean_sqrt_len" else count)
        if self.normalize:
            norm = ops.sqrt(ops.sum(ops.square(pooled), axis=-1, keepdims=True))
            pooled = pooled / ops.maximum(norm, 1e-12)
        return pooled

    def compute_output_shape(self, hidden_shape: Any, padding_mask_shape: Any = None) -> Any:
        return (hidden_shape[0], hidden_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "normalize": self.normalize}


__all__ = ["SegmentIds", "SentenceEmbedding"]
