"""ImageNet pixels in, ImageNet labels out: preprocessing modes and `decode_predictions`.

The class index is fetched through the verified downloader like any weight file,
never through Keras's own unverified cache.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from zoo.errors import InvalidInputError
from zoo.hub.fetch import fetch_asset
from zoo.hub.registry import get_spec

# Keras's constants for the "caffe" and "torch" modes (imagenet_utils.py).
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(images: np.ndarray, mode: str) -> np.ndarray:
    """Scale RGB pixels in 0..255 the way a model of that `mode` was trained.

    Pure numpy, so the server can run it in worker threads without TensorFlow.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.shape[-1] != 3:
        raise InvalidInputError(f"expected RGB images (last axis 3), got shape {x.shape}")
    if mode == "caffe":
        return x[..., ::-1] - _CAFFE_MEAN_BGR
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    if mode == "none":
        return x
    raise InvalidInputError(f"unknown preprocessing mode {mode!r}")


def preprocess_input(name: str, images: np.ndarray) -> np.ndarray:
    """`preprocess` with the mode the registered model `name` expects."""
    return preprocess(images, get_spec(name).input.preprocessing)


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[tuple[str, str], ...]:
    """(WordNet id, label) for each of the 1000 ImageNet classes, in index order."""
    with open(fetch_asset("imagenet_class_index"), encoding="utf-8") as f:
        index = json.load(f)
    return tuple((index[str(i)][0], index[str(i)][1]) for i in range(len(index)))


def decode_predictions(
    preds: np.ndarray, top: int = 5
) -> list[list[tuple[str, str, float]]]:
    """Per image, the `top` (WordNet id, label, score) triples, best first."""
    preds = np.asarray(preds)
    labels = imagenet_labels()
    if preds.ndim != 2 or preds.shape[1] != len(labels):
        raise InvalidInputError(
            f"decode_predictions expects shape (batch, {len(labels)}), got {preds.shape}"
        )
    if not 1 <= top <= len(labels):
        raise InvalidInputError(f"top must be between 1 and {len(labels)}, got {top}")
    order = np.argsort(-preds, axis=1)[:, :top]
    return [
        [(labels[i][0], labels[i][1], float(row[i])) for i in idx]
        for row, idx in zip(preds, order, strict=True)
    ]
