"""Top-k predictions, the same way for every classifier (images, texts, the server).

`top_k` follows Keras's `decode_predictions`: it never fails for being larger than the
number of classes. None (or 0, the protocol's "unset") means min(5, classes); a larger
request is clamped to the number of classes; only a negative one is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zoo.errors import InvalidInputError

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    index: int


def resolve_top_k(top_k: int | None, num_classes: int) -> int:
    """How many predictions to return for a model of `num_classes` classes."""
    if top_k is None or top_k == 0:
        return min(DEFAULT_TOP_K, num_classes)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise InvalidInputError(f"top_k must be a positive whole number, got {top_k!r}")
    return min(int(top_k), num_classes)


def top_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """The `k` best classes of one row of scores, best first (ties: lower index first)."""
    k = min(k, probs.shape[-1])
    idx = np.argpartition(-probs, k - 1)[:k] if k < probs.shape[-1] else np.arange(k)
    return idx[np.argsort(-probs[idx], kind="stable")]


def top_predictions(probs: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    """One row of probabilities -> its top `k` predictions."""
    return [Prediction(labels[i] if i < len(labels) else str(i), float(probs[i]), int(i))
            for i in top_indices(probs, k)]


__all__ = ["DEFAULT_TOP_K", "Prediction", "resolve_top_k", "top_indices", "top_predictions"]
