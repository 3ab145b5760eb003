"""Classify images with a registered ImageNet model or a fine-tuned model folder.

`ImageClassifier` runs the Keras model through a runtime (zoo.vision.runtimes): `tf`, the
model with BatchNorm folded into its convolutions in one `tf.function` with a dynamic batch
dimension (traced once, then every call is a compiled call, about 5x cheaper than
`model.predict` on a single image); `openvino` / `openvino-bf16`, each admitted only past its
parity gate against `tf`; or `auto`, the fastest that passes, per batch size. The CLI,
Python callers and the gRPC server's batcher all classify through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo import model_dir
from zoo.errors import InvalidInputError
from zoo.predictions import Prediction, resolve_top_k, top_predictions
from zoo.refs import ModelRef, resolve
from zoo.vision.imagenet import preprocess
from zoo.vision.images import decode
from zoo.vision.runtimes import TF

if TYPE_CHECKING:
    from zoo.vision.runtimes import RuntimeReport

ImageInput = str | Path | bytes | np.ndarray


class ImageClassifier:
    """Pixels in (uint8 RGB), class probabilities out, for one loaded model."""

    def __init__(self, name: str, model: Any, labels: Sequence[str], size: tuple[int, int],
                 preprocessing: str | None, source: str, runtime: str = TF):
        from zoo.vision.runtimes import load_runtime

        self.model = model
        self.name, self.labels = name, list(labels)
        self.size, self.preprocessing, self.source = size, preprocessing, source
        self.runtime = load_runtime(model, size, runtime, prepare=self.prepare)

    @property
    def report(self) -> RuntimeReport:
        """Which runtime runs this model, and why (the measurement)."""
        return self.runtime.report

    @classmethod
    def load(cls, model: str | Path | ModelRef, runtime: str = TF) -> ImageClassifier:
        """A registry name, a fine-tuned model's folder or recorded name, or a resolved ref."""
        ref = resolve(model)
        if not ref.is_image:
            raise InvalidInputError(
                f"{ref.name} is a {ref.task} model; classify images with an image model"
                + (" (texts: zoo predict MODEL --text ...)" if ref.is_text_classifier else ""))
        if ref.folder is not None:
            assert ref.image_size is not None and ref.labels is not None
            return cls(ref.name, model_dir.load_keras(ref.folder), ref.labels, ref.image_size,
                       None, str(ref.folder), runtime)
        from zoo.vision.build import build_image_model
        from zoo.vision.imagenet import imagenet_labels

        spec = ref.spec
        assert spec.input.size is not None
        labels = [label for _, label in imagenet_labels()]
        return cls(spec.name, build_image_model(spec), labels, spec.input.size,
                   spec.input.preprocessing, "registry", runtime)

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
                image = np.asarray(Image.fromarray(image).resize(self.size[::-1],
                                                                 Image.Resampling.BILINEAR))
            return image
        return decode(image, self.size)

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels (one image or a batch) -> float32 input of the compiled call. Pure
        numpy: the server prepares each image in its decoding threads, beside the model."""
        x = np.asarray(pixels, dtype=np.float32)
        return preprocess(x, self.preprocessing) if self.preprocessing is not None else x

    def run(self, x: np.ndarray) -> np.ndarray:
        """A `prepare`d (N, H, W, 3) batch -> (N, classes) probabilities, one runtime call."""
        return np.asarray(self.runtime(np.asarray(x, dtype=np.float32)))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 pixels -> (N, classes) probabilities, one compiled call."""
        return self.run(self.prepare(batch))

    def top_k(self, probs: np.ndarray, k: int | None = None) -> list[list[Prediction]]:
        k = resolve_top_k(k, self.num_classes)
        return [top_predictions(row, self.labels, k) for row in probs]

    def classify(self, images: Sequence[ImageInput], top_k: int | None = None
                 ) -> list[list[Prediction]]:
        """Top-k predictions per image; `top_k` None means min(5, classes), and a larger one
        is clamped to the number of classes."""
        k = resolve_top_k(top_k, self.num_classes)
        if not images:
            raise InvalidInputError("no images to classify")
        batch = np.stack([self.pixels(image) for image in images])
        return self.top_k(self.probabilities(batch), k)


_loaded: dict[tuple[str, str], ImageClassifier] = {}


def load_classifier(model: str | Path | ModelRef, runtime: str = TF) -> ImageClassifier:
    """A loaded classifier, kept for the life of the process (CLI and Python use).
    `runtime` is one of zoo.vision.runtimes.CHOICES; `auto` measures at load (seconds) and
    pays off for many images."""
    ref = resolve(model)
    key = (str(ref.folder.resolve()) if ref.folder is not None else ref.spec.name, runtime)
    if key not in _loaded:
        _loaded[key] = ImageClassifier.load(ref, runtime)
    return _loaded[key]


def predict(model: str | Path | ModelRef, images: Sequence[ImageInput],
            top_k: int | None = None, runtime: str = TF) -> list[list[Prediction]]:
    """Top-k predictions per image, from a registry name, a fine-tune's name, or its folder."""
    return load_classifier(model, runtime).classify(images, top_k)
