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
    NonFiniteError,
    OfflineError,
    WeightsNotFoundError,
    ZooError,
)
from zoo.hub.fetch import fetch_asset, fetch_weights
from zoo.hub.registry import get_spec, list_models
from zoo.hub.spec import ModelSpec
from zoo.refs import ModelRef, resolve

if TYPE_CHECKING:
    from zoo.finetuning.api import FineTuneResult, finetune
    from zoo.finetuning.hyperparameters import HyperParameters
    from zoo.loading import load_model
    from zoo.predictions import Prediction
    from zoo.text.classifier import TextClassifier
    from zoo.text.encoder import TextEncoder, embed, load_encoder, most_similar
    from zoo.vision.classifier import ImageClassifier, load_classifier, predict
    from zoo.vision.imagenet import decode_predictions, preprocess_input

__version__ = "0.1.0"

_LAZY = {
    "load_model": "zoo.loading",
    "finetune": "zoo.finetuning.api",
    "FineTuneResult": "zoo.finetuning.api",
    "HyperParameters": "zoo.finetuning.hyperparameters",
    "Prediction": "zoo.predictions",
    "predict": "zoo.vision.classifier",
    "load_classifier": "zoo.vision.classifier",
    "ImageClassifier": "zoo.vision.classifier",
    "decode_predictions": "zoo.vision.imagenet",
    "preprocess_input": "zoo.vision.imagenet",
    "embed": "zoo.text.encoder",
    "most_similar": "zoo.text.encoder",
    "load_encoder": "zoo.text.encoder",
    "TextEncoder": "zoo.text.encoder",
    "TextClassifier": "zoo.text.classifier",
}


def __getattr__(name: str) -> Any:
    # Lazily imported so that `import zoo` stays fast for the CLI's cheap commands.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = [
    "CacheError",
    "HyperParameters",
    "ModelRef",
    "NonFiniteError",
    "TextClassifier",
    "load_classifier",
    "resolve",
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
