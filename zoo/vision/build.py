"""Build registered image models with Keras and fill them from Zoo's verified cache.

Keras applications are built with `weights=None` and loaded from the file
`fetch_weights` placed in the cache, so every weight byte passes through the
verified downloader and never through Keras's own `get_file`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.errors import InvalidInputError
from zoo.hub.fetch import fetch_weights
from zoo.hub.spec import ModelSpec

if TYPE_CHECKING:
    import keras


def build_image_model(
    spec: ModelSpec,
    include_top: bool = True,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> keras.Model:
    """The registry image model `spec` with its verified pretrained weights.

    The ImageNet classifier by default; `include_top=False` gives the pooled feature
    extractor (any input size); `num_classes=N` puts a new, untrained N-way head on the
    pretrained base.
    """
    import keras

    if not spec.is_image or spec.input.size is None:
        raise InvalidInputError(f"{spec.name} is a {spec.task} model, not an image model")
    default_shape = (*spec.input.size, 3)
    new_head = num_classes is not None and num_classes != spec.head.num_classes
    if num_classes is not None and num_classes < 1:
        raise InvalidInputError(f"num_classes must be at least 1, got {num_classes}")
    if include_top and not new_head and input_shape not in (None, default_shape):
        raise InvalidInputError(
            f"{spec.name} with its ImageNet classifier takes {default_shape} inputs, not "
            f"{input_shape}; pass include_top=False for other sizes"
        )
    shape = input_shape or default_shape
    if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 32:
        raise InvalidInputError(f"input_shape must be (height, width, 3), at least 32 px; got {shape}")
    application = getattr(keras.applications, spec.architecture)
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if include_top and not new_head:
        model = application(weights=None, include_top=True, input_shape=shape, **kwargs)
        model.load_weights(fetch_weights(spec, include_top=True))
        return model
    base = application(weights=None, include_top=False, input_shape=shape, pooling="avg", **kwargs)
    base.load_weights(fetch_weights(spec, include_top=False))
    if not include_top:
        return base
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(base.output)
    return keras.Model(base.input, outputs, name=f"{spec.name}_{num_classes}_classes")


def features_model(model: keras.Model) -> keras.Model:
    """A fine-tuned image model cut before its head: pixels -> the base's pooled features."""
    import keras

    try:
        head = model.get_layer("head")
        return keras.Model(model.input, head.input)
    except (ValueError, AttributeError):
        return keras.Model(model.input, model.layers[-2].output)
