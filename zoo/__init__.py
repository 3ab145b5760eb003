"""Zoo: pretrained Keras models with verified weights, fine-tuning and serving.

Importing `zoo` is cheap: TensorFlow is imported only by the functions that build
or run a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.errors import (
    CacheError,
    ChecksumMismatchError,
    InvalidInputError,
    ManifestError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    WeightsNotFoundError,
    ZooError,
)
from zoo.hub.fetch import fetch_asset, fetch_weights
from zoo.hub.registry import get_spec, list_models
from zoo.hub.spec import ModelSpec

if TYPE_CHECKING:
    from zoo.finetuning.image import FineTuneResult, finetune
    from zoo.text.encoder import TextEncoder, embed, load_encoder, most_similar
    from zoo.vision.build import load_model
    from zoo.vision.classifier import ImageClassifier, Prediction, predict
    from zoo.vision.imagenet import decode_predictions, preprocess_input

__version__ = "0.1.0"

_LAZY = {
    "load_model": "zoo.vision.build",
    "finetune": "zoo.finetuning.image",
    "FineTuneResult": "zoo.finetuning.image",
    "predict": "zoo.vision.classifier",
    "Prediction": "zoo.vision.classifier",
    "ImageClassifier": "zoo.vision.classifier",
    "decode_predictions": "zoo.vision.imagenet",
    "preprocess_input": "zoo.vision.imagenet",
    "embed": "zoo.text.encoder",
    "most_similar": "zoo.text.encoder",
    "load_encoder": "zoo.text.encoder",
    "TextEncoder": "zoo.text.encoder",
}


def __getattr__(name: str) -> Any:
    # Lazily imported so that `import zoo` stays fast for the CLI's cheap commands.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = [
    "CacheError",
    "FineTuneResult",
    "ImageClassifier",
    "Prediction",
    "ChecksumMismatchError",
    "InvalidInputError",
    "ManifestError",
    "ModelNotFoundError",
    "ModelSpec",
    "NetworkError",
    "TextEncoder",
    "OfflineError",
    "WeightsNotFoundError",
    "ZooError",
    "decode_predictions",
    "embed",
    "fetch_asset",
    "fetch_weights",
    "finetune",
    "get_spec",
    "list_models",
    "load_encoder",
    "load_model",
    "most_similar",
    "predict",
    "preprocess_input",
]
