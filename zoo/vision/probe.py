"""The probe set: real images at a model's input size, for comparing two runtimes.

A converted or reduced-precision model is judged on the kind of input it will serve, not
on noise: noise sits far from every decision boundary a photograph meets, and a bf16
model can agree on noise and still flip real predictions. The set is five photographs
(crops of several sizes, flips, the whole frame squashed) and twenty handwritten digits,
shipped in zoo/data/probe (see its README for sources and licences) and varied with a
fixed seed, so every run of a gate sees the same pixels.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
VARIATIONS_PER_PHOTO = 16  # whole frame, a centre crop, its mirror, 13 random crops
DIGITS = 20
SIZE = len(PHOTOS) * VARIATIONS_PER_PHOTO + DIGITS  # 100: one flip in 100 is 99 % agreement
SEED = 17
_FOLDER = Path(__file__).resolve().parent.parent / "data" / "probe"


@functools.cache
def _photo(name: str) -> Image.Image:
    with Image.open(_FOLDER / f"{name}.jpg") as image:
        return image.convert("RGB")


@functools.cache
def _digits() -> tuple[Image.Image, ...]:
    with Image.open(_FOLDER / "digits.png") as image:
        row = np.asarray(image.convert("L"))
    side = row.shape[0]
    return tuple(Image.fromarray(row[:, i:i + side]) for i in range(0, row.shape[1], side))


def _variations(photo: Image.Image, size: tuple[int, int], rng: np.random.Generator
                ) -> list[Image.Image]:
    """`VARIATIONS_PER_PHOTO` views of one photograph, each resized to `size` (H, W)."""
    target = size[::-1]
    w, h = photo.size
    short = min(w, h)
    side = short * 4 // 5  # not the whole short side: a square photo's crop would be itself
    centre = photo.crop(((w - side) // 2, (h - side) // 2,
                         (w - side) // 2 + side, (h - side) // 2 + side))
    views = [photo, centre, centre.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    while len(views) < VARIATIONS_PER_PHOTO:
        side = int(rng.integers(short // 3, short + 1))
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = photo.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        views.append(crop)
    return [view.resize(target, Image.Resampling.BILINEAR) for view in views]


@functools.lru_cache(maxsize=8)
def _probe(size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    sources = [_variations(_photo(name), size, rng) for name in PHOTOS]
    sources.append([digit.resize(size[::-1], Image.Resampling.BILINEAR).convert("RGB")
                    for digit in _digits()[:DIGITS]])
    # Interleaved, so that any prefix of the set mixes every source.
    ordered = [views[i] for i in range(max(map(len, sources)))
               for views in sources if i < len(views)]
    pixels = np.stack([np.asarray(image, dtype=np.uint8) for image in ordered])
    pixels.setflags(write=False)
    return pixels


def probe_pixels(size: tuple[int, int], count: int | None = None) -> np.ndarray:
    """The first `count` (default all `SIZE`) probe images as (N, H, W, 3) uint8 RGB,
    read-only; the same pixels on every call."""
    pixels = _probe((int(size[0]), int(size[1])))
    return pixels if count is None else pixels[:count]
