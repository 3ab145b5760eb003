"""The seeded, stratified train/validation split every fine-tune uses (images and texts)."""

from __future__ import annotations

import random

import numpy as np


def stratified_split(
    labels: np.ndarray, val_split: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: each class shuffled with `seed` and `val_split` of it
    held out (at least one example, never all of a class with two or more)."""
    rng = random.Random(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in sorted(set(labels.tolist())):
        members = [i for i, y in enumerate(labels.tolist()) if y == label]
        rng.shuffle(members)
        n_val = int(round(len(members) * val_split))
        if val_split > 0 and len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        val_idx.extend(members[:n_val])
        train_idx.extend(members[n_val:])
    return np.array(sorted(train_idx), dtype=np.int64), np.array(sorted(val_idx), dtype=np.int64)
