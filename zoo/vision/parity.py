"""Does a runtime compute what TensorFlow computes? The gate every runtime and export passes.

Two gates, by what the runtime promises:

- `F32` (a runtime or exported file that claims float32): the largest difference from
  the TensorFlow reference, divided by the largest magnitude of the reference, is at most
  1e-4. Conversions that only reorder float32 arithmetic land near 1e-6.
- `BF16` (a runtime that computes in bfloat16, 8 bits of mantissa): element-wise error
  says little (about 1e-2 is normal), so it is judged on what a user sees: on the probe
  set of real images (zoo.vision.probe) the top-1 class agrees on at least 99 % of
  images and the top-5 sets share at least 90 % of their members on average. Only class
  scores can be judged so: feature vectors have no classes, and bf16 features are refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

F32 = "f32"
BF16 = "bf16"
GATES = (F32, BF16)
F32_MAX_RELATIVE_ERROR = 1e-4
BF16_MIN_TOP1_AGREEMENT = 0.99
BF16_MIN_TOP5_OVERLAP = 0.90
TOP_K = 5

Outputs = Literal["scores", "features"]
"""What a model returns: class scores (probabilities or logits) or feature vectors."""


@dataclass(frozen=True)
class Parity:
    """One runtime against the TensorFlow reference on the same probe images."""

    gate: str  # F32 or BF16
    images: int
    max_relative_error: float
    top1_agreement: float | None  # None for feature outputs
    top5_overlap: float | None
    passed: bool
    reason: str  # why it passed or failed, in one line

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        text = f"max rel. error {self.max_relative_error:.1e}"
        if self.top1_agreement is not None and self.top5_overlap is not None:
            text += (f", top-1 agreement {self.top1_agreement:.1%}, top-5 overlap "
                     f"{self.top5_overlap:.1%}")
        return f"{text} on {self.images} images"


def allowed_flips(images: int) -> int:
    """How many top-1 disagreements the bf16 gate tolerates on `images` images."""
    return int(images * (1 - BF16_MIN_TOP1_AGREEMENT) + 1e-9)


def relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """max |candidate - reference| / max |reference| (inf when the shapes differ or the
    candidate is not finite)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or not np.all(np.isfinite(candidate)):
        return float("inf")
    scale = float(np.max(np.abs(reference))) or 1.0
    return float(np.max(np.abs(candidate - reference))) / scale


def _top_agreement(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(share of rows whose argmax agrees, mean share of the top-k sets in common)."""
    k = min(TOP_K, reference.shape[-1])
    top1 = float(np.mean(np.argmax(reference, -1) == np.argmax(candidate, -1)))
    ref_top = np.argsort(-reference, axis=-1)[:, :k]
    cand_top = np.argsort(-candidate, axis=-1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ref_top, cand_top, strict=True)]
    return top1, float(np.mean(overlap))


def check(reference: np.ndarray, candidate: np.ndarray, gate: str,
          outputs: Outputs = "scores") -> Parity:
    """Judge `candidate` (one runtime's outputs on the probe) against `reference`."""
    if gate not in GATES:
        raise ValueError(f"unknown parity gate {gate!r}; one of {GATES}")
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    error = relative_error(reference, candidate)
    images = int(reference.shape[0])
    scores = outputs == "scores" and reference.ndim == 2 and np.isfinite(error)
    top1, top5 = _top_agreement(reference, candidate) if scores else (None, None)
    if not np.isfinite(error):
        passed = False
        reason = (f"outputs differ in shape ({candidate.shape} vs {reference.shape}) "
                  "or are not finite")
    elif gate == F32:
        passed = error <= F32_MAX_RELATIVE_ERROR
        reason = (f"max relative error {error:.1e} "
                  f"{'<=' if passed else '>'} {F32_MAX_RELATIVE_ERROR:.0e}")
    elif top1 is None or top5 is None:
        passed = False
        reason = "bf16 is judged on class scores only; these outputs are features"
    else:
        passed = top1 >= BF16_MIN_TOP1_AGREEMENT and top5 >= BF16_MIN_TOP5_OVERLAP
        reason = (f"top-1 agreement {top1:.1%} (needs {BF16_MIN_TOP1_AGREEMENT:.0%}), "
                  f"top-5 overlap {top5:.1%} (needs {BF16_MIN_TOP5_OVERLAP:.0%})")
    return Parity(gate, images, error, top1, top5, bool(passed), reason)
