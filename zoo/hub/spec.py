"""What Zoo knows about a model, as plain frozen data.

A spec never imports TensorFlow: `zoo list`, `zoo info` and `zoo fetch` read specs and
must answer in well under a second. Builders look the architecture up by name only
when a model is actually built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

IMAGE_CLASSIFICATION = "image-classification"
TEXT_EMBEDDING = "text-embedding"
TEXT_CLASSIFICATION = "text-classification"
TASKS = (IMAGE_CLASSIFICATION, TEXT_EMBEDDING, TEXT_CLASSIFICATION)

# How pixels must be scaled before they reach an image model (Keras's own names):
#   caffe  BGR, ImageNet mean subtracted, no scaling      (VGG, ResNet v1)
#   tf     scaled to [-1, 1]                               (MobileNet, Inception, ResNet v2, ...)
#   torch  scaled to [0, 1], ImageNet mean/std normalised  (DenseNet)
#   none   raw 0..255 pixels: the model rescales inside    (EfficientNet, MobileNetV3, ConvNeXt)
PREPROCESSING_MODES = ("caffe", "tf", "torch", "none")


@dataclass(frozen=True)
class InputSpec:
    """What a model eats: an image size and pixel scaling, or a token budget."""

    size: tuple[int, int] | None = None  # (height, width) for images
    preprocessing: str = "none"
    max_length: int | None = None  # tokens, for text models


@dataclass(frozen=True)
class HeadSpec:
    """The classifier that ships with the pretrained weights, if any."""

    num_classes: int | None = None
    labels: str | None = None  # a label-set id, e.g. "imagenet"
    pooling: str | None = None  # text embeddings: "mean" or "cls"


@dataclass(frozen=True)
class Provenance:
    """Where the weights come from and how good they are reported to be."""

    license: str = "unknown"
    paper: str | None = None
    top1: float | None = None  # ImageNet top-1 accuracy as Keras publishes it (%)
    top5: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: architecture, input, head, provenance.

    `builder` names how to construct it ("keras.applications" or "keras_hub");
    `architecture` is the class name there; `builder_kwargs` carries variant
    arguments such as MobileNet's `alpha`, as a sorted tuple so the spec stays hashable.
    """

    name: str
    task: str
    family: str
    builder: str
    architecture: str
    params: int | None
    input: InputSpec
    head: HeadSpec = field(default_factory=HeadSpec)
    provenance: Provenance = field(default_factory=Provenance)
    builder_kwargs: tuple[tuple[str, Any], ...] = ()
    weights_tag: str = "imagenet"
    description: str = ""

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.builder_kwargs)

    @property
    def is_image(self) -> bool:
        return self.task == IMAGE_CLASSIFICATION

    @property
    def is_text(self) -> bool:
        return self.task in (TEXT_EMBEDDING, TEXT_CLASSIFICATION)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["builder_kwargs"] = self.kwargs
        if self.input.size is not None:
            data["input"]["size"] = list(self.input.size)
        return data
