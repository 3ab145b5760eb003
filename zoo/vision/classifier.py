"""Classify images with a registered ImageNet model or a fine-tuned model directory.

`ImageClassifier` wraps the Keras model, BatchNorm folded into its convolutions (see
`zoo.vision.inference`), in one `tf.function` with a dynamic batch dimension: traced once, then
every call is a compiled call (about 5x cheaper than `model.predict` on a single image).
The CLI, Python callers and the gRPC server's batcher all classify through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo import model_dir
from zoo.errors import InvalidInputError
from zoo.hub.registry import get_spec
from zoo.vision.imagenet import preprocess
from zoo.vision.images import decode

ImageInput = str | Path | bytes | np.ndarray


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    index: int


class ImageClassifier:
    """Pixels in (uint8 RGB), class probabilities out, for one loaded model."""

    def __init__(self, name: str, model: Any, labels: Sequence[str], size: tuple[int, int],
                 preprocessing: str | None, source: str):
        from zoo.vision.inference import compiled_image_call, inference_model

        # The model as it is run: BatchNorm folded into the convolutions (same outputs).
        self.model = inference_model(model)
        self.name, self.labels = name, list(labels)
        self.size, self.preprocessing, self.source = size, preprocessing, source
        self._call = compiled_image_call(self.model, size)

    @classmethod
    def load(cls, name_or_dir: str | Path) -> ImageClassifier:
        folder = model_dir.resolve(name_or_dir)
        if folder is not None:
            meta = model_dir.read_meta(folder)
            if meta.get("task") != "image-classification":
                raise InvalidInputError(f"{name_or_dir} is a {meta.get('task')} model, not an image classifier")
            return cls(meta["name"], model_dir.load(folder), meta["labels"],
                       tuple(meta["input"]["size"]), None, str(folder))
        spec = get_spec(str(name_or_dir))
        if not spec.is_image:
            raise InvalidInputError(f"{spec.name} is a {spec.task} model; classify images with an image model")
        from zoo.vision.build import load_model
        from zoo.vision.imagenet import imagenet_labels

        assert spec.input.size is not None
        labels = [label for _, label in imagenet_labels()]
        return cls(spec.name, load_model(spec.name), labels, spec.input.size,
                   spec.input.preprocessing, "registry")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def pixels(self, image: ImageInput) -> np.ndarray:
        """One input as (H, W, 3) uint8 at this model's size."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise InvalidInputError(
                    f"arrays must be (height, width, 3) uint8 RGB, got {image.shape} {image.dtype}"
                )
            from PIL import Image

            if image.shape[:2] != self.size:
                image = np.asarray(Image.fromarray(image).resize(self.size[::-1], Image.Resampling.BILINEAR))
            return image
        return decode(image, self.size)

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels (one image or a batch) -> float32 input of the compiled call. Pure
        numpy: the server prepares each image in its decoding threads, beside the model."""
        x = np.asarray(pixels, dtype=np.float32)
        return preprocess(x, self.preprocessing) if self.preprocessing is not None else x

    def run(self, x: np.ndarray) -> np.ndarray:
        """A `prepare`d (N, H, W, 3) batch -> (N, classes) probabilities, one compiled call."""
        return np.asarray(self._call(x))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 pixels -> (N, classes) probabilities, one compiled call."""
        return self.run(self.prepare(batch))

    def top_k(self, probs: np.ndarray, k: int) -> list[list[Prediction]]:
        check_top_k(k, self.num_classes)
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[Prediction(self.labels[i], float(row[i]), int(i)) for i in idx]
                for row, idx in zip(probs, order, strict=True)]

    def classify(self, images: Sequence[ImageInput], top_k: int = 5) -> list[list[Prediction]]:
        check_top_k(top_k, self.num_classes)
        if not images:
            raise InvalidInputError("no images to classify")
        batch = np.stack([self.pixels(image) for image in images])
        return self.top_k(self.probabilities(batch), top_k)


def check_top_k(k: int, num_classes: int) -> None:
    if not 1 <= k <= num_classes:
        raise InvalidInputError(f"top_k must be between 1 and {num_classes}, got {k}")


_loaded: dict[str, ImageClassifier] = {}


def classifier(name_or_dir: str | Path) -> ImageClassifier:
    """A loaded classifier, kept for the life of the process (CLI and Python use)."""
    key = str(name_or_dir)
    if key not in _loaded:
        _loaded[key] = ImageClassifier.load(name_or_dir)
    return _loaded[key]


def predict(name_or_dir: str | Path, images: Sequence[ImageInput], top_k: int = 5
            ) -> list[list[Prediction]]:
    """Top-k predictions per image, from a registry name, a fine-tune's name, or its folder."""
    return classifier(name_or_dir).classify(images, top_k)
