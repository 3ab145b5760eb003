"""scikit-learn's digits (real handwritten digits) written out as an image-folder dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(root: Path, classes: tuple[int, ...] = tuple(range(10)), per_class: int = 60,
                 size: int = 32, start: int = 0) -> Path:
    """`root/<digit>/<i>.png`: 8x8 grey digits upscaled to `size` px, `per_class` each,
    starting at the `start`-th example of each class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for digit in classes:
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        images = digits.images[digits.target == digit][start : start + per_class]
        for i, image in enumerate(images):
            grey = (image / 16.0 * 255).astype(np.uint8)
            Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.BILINEAR).save(
                folder / f"{i:03d}.png"
            )
    return root
