"""Image datasets for fine-tuning: find the examples, check them, split them, feed them.

A dataset is a folder with one subfolder per class, or a CSV of `path,label` (paths
relative to the CSV's folder). Every image is decoded once up front, in threads: files
that fail are skipped, counted and named in a warning, and the decoded pixels are kept
when they fit the memory budget so training never decodes twice. The split is seeded
and stratified, so each class keeps its share in validation.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from zoo.errors import InvalidInputError
from zoo.finetuning.splits import stratified_split
from zoo.vision.images import decode, is_image_file

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger("zoo")

MEMORY_BUDGET = int(os.environ.get("ZOO_DATA_MEMORY_MB", "2048")) * 1024 * 1024


@dataclass
class Split:
    """One side of the split: paths, integer labels, and the pixels once decoded."""

    paths: list[Path]
    labels: np.ndarray
    pixels: np.ndarray | None = None  # (N, H, W, 3) uint8, when kept in memory

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class ImageDataset:
    classes: list[str]
    image_size: tuple[int, int]
    train: Split
    val: Split
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.train.labels.tolist()) + Counter(self.val.labels.tolist())
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}


def _scan_folder(root: Path) -> list[tuple[Path, str]]:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise InvalidInputError(
            f"{root} has no class subfolders; put each class's images in a folder named "
            "after the class (data/cat/*.jpg, data/dog/*.jpg), or pass a CSV of path,label"
        )
    items: list[tuple[Path, str]] = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if is_image_file(p))
        if not files:
            raise InvalidInputError(
                f"class folder {class_dir} holds no images (.jpg, .png, .bmp, .gif, .webp)"
            )
        items.extend((p, class_dir.name) for p in files)
    return items


def _read_csv(path: Path) -> list[tuple[Path, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            columns = set(rows[0]) if rows else set()
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path} is not UTF-8 text") from None
    except csv.Error as e:
        raise InvalidInputError(f"{path} is not a valid CSV file: {e}") from None
    if not rows:
        raise InvalidInputError(f"{path} has no rows; expected a header `path,label` and data")
    if not {"path", "label"} <= columns:
        raise InvalidInputError(
            f"{path} needs columns `path` and `label`; it has {', '.join(sorted(c for c in columns if c))}"
        )
    items = []
    for line, row in enumerate(rows, start=2):
        image, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not image or not label:
            raise InvalidInputError(f"{path} line {line}: empty path or label")
        items.append(((path.parent / image).resolve(), label))
    return items


def find_examples(data: str | Path) -> list[tuple[Path, str]]:
    """(image path, class name) pairs from a class-folder tree or a `path,label` CSV."""
    root = Path(data).expanduser()
    if not root.exists():
        raise InvalidInputError(f"dataset {root} does not exist")
    return _read_csv(root) if root.is_file() else _scan_folder(root)


def _decode_all(
    paths: list[Path], size: tuple[int, int]
) -> tuple[list[int], list[np.ndarray], list[tuple[Path, str]]]:
    """Decode every path in threads; return indices that worked, their pixels, failures."""

    def attempt(path: Path) -> np.ndarray | str:
        try:
            return decode(path, size)
        except InvalidInputError as e:
            return str(e)

    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(attempt, paths))
    good = [i for i, r in enumerate(results) if not isinstance(r, str)]
    pixels = [r for r in results if not isinstance(r, str)]
    failed = [(paths[i], r) for i, r in enumerate(results) if isinstance(r, str)]
    return good, pixels, failed


def _warn_skipped(skipped: list[tuple[Path, str]]) -> None:
    if skipped:
        shown = "; ".join(f"{p.name}: {why.split(': ', 1)[-1]}" for p, why in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        log.warning("skipped %d unreadable image(s): %s%s", len(skipped), shown, more)


def load_image_dataset(
    data: str | Path,
    image_size: tuple[int, int],
    *,
    val_data: str | Path | None = None,
    val_split: float = 0.2,
    seed: int = 0,
) -> ImageDataset:
    """Find, check, decode and split an image dataset."""
    if not 0.0 <= val_split < 1.0:
        raise InvalidInputError(f"val_split must be in [0, 1), got {val_split}")
    examples = find_examples(data)
    val_examples = find_examples(val_data) if val_data is not None else []
    paths = [p for p, _ in examples + val_examples]
    good, pixels, skipped = _decode_all(paths, image_size)
    _warn_skipped(skipped)
    good_set = set(good)
    train_names = [examples[i][1] for i in range(len(examples)) if i in good_set]
    if not train_names:
        raise InvalidInputError(f"no readable image in {data}")
    classes = sorted(set(train_names))
    if len(classes) < 2:
        raise InvalidInputError(
            f"{data} has {len(classes)} class ({', '.join(classes)}); a classifier needs at least 2"
        )
    for name in sorted({n for _, n in examples} - set(classes)):
        raise InvalidInputError(f"class {name!r} has no readable image in {data}")
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({n for _, n in val_examples} - set(classes))
    if unknown:
        raise InvalidInputError(
            f"validation data {val_data} has classes the training data lacks: {', '.join(unknown)}"
        )
    all_labels = np.array([index[n] for _, n in examples + val_examples], dtype=np.int64)
    kept_paths = [paths[i] for i in good]
    kept_labels = all_labels[good]
    is_val_source = np.array([i >= len(examples) for i in good])
    if val_data is not None:
        train_idx, val_idx = np.flatnonzero(~is_val_source), np.flatnonzero(is_val_source)
    else:
        train_idx, val_idx = stratified_split(kept_labels, val_split, seed)
    keep_pixels = len(pixels) * image_size[0] * image_size[1] * 3 <= MEMORY_BUDGET
    stacked = np.stack(pixels) if keep_pixels else None

    def split(idx: np.ndarray) -> Split:
        return Split(
            paths=[kept_paths[i] for i in idx],
            labels=kept_labels[idx],
            pixels=stacked[idx] if stacked is not None else None,
        )

    return ImageDataset(classes, image_size, split(train_idx), split(val_idx), skipped)


def to_tf_dataset(
    split: Split,
    image_size: tuple[int, int],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (float32 pixels in 0..255, int label), decoded in parallel, prefetched."""
    import tensorflow as tf

    labels = split.labels.astype(np.int64)
    if split.pixels is not None:
        ds = tf.data.Dataset.from_tensor_slices((split.pixels, labels))
    else:
        height, width = image_size

        def load(path: tf.Tensor) -> np.ndarray:
            return decode(path.decode("utf-8"), image_size)

        def load_tf(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
            image.set_shape((height, width, 3))
            return image, label

        ds = tf.data.Dataset.from_tensor_slices(([str(p) for p in split.paths], labels))
        ds = ds.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.prefetch(tf.data.AUTOTUNE)
