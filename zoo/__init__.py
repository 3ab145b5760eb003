"""Zoo: pretrained Keras models with verified weights, fine-tuning and serving.

Importing `zoo` is cheap: TensorFlow is imported only by the functions that build
or run a model.
"""

from __future__ import annotations

import importlib
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
from zoo.fetch import fetch_asset, fetch_weights
from zoo.registry import get_spec, list_models
from zoo.spec import ModelSpec

if TYPE_CHECKING:
    from zoo.finetuning import FineTuneResult, finetune
    from zoo.imagenet import decode_predictions, preprocess_input
    from zoo.models import load_model
    from zoo.prediction import ImageClassifier, Prediction, predict
    from zoo.text import TextEncoder, embed, load_encoder, most_similar

__version__ = "0.1.0"

_LAZY = {
    "load_model": "zoo.models",
    "finetune": "zoo.finetuning",
    "FineTuneResult": "zoo.finetuning",
    "predict": "zoo.prediction",
    "Prediction": "zoo.prediction",
    "ImageClassifier": "zoo.prediction",
    "decode_predictions": "zoo.imagenet",
    "preprocess_input": "zoo.imagenet",
    "embed": "zoo.text",
    "most_similar": "zoo.text",
    "load_encoder": "zoo.text",
    "TextEncoder": "zoo.text",
}


# `zoo.finetune` names the fine-tune function (lazily, through _LAZY) and a package of its
# parts (zoo/finetune/). Python binds a package to its parent's attribute when it is first
# imported, which would replace the function by the package; importing the package here
# (empty: no TensorFlow) and dropping that binding keeps `zoo.finetune(...)` the function.
# Its modules import as usual: `from zoo.finetune.head_fit import fit_head`.
importlib.import_module("zoo.finetune")
del globals()["finetune"]


def __getattr__(name: str) -> Any:
    # Lazily imported so that `import zoo` stays fast for the CLI's cheap commands.
    if name in _LAZY:
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
