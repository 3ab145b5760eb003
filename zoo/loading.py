"""`zoo.load_model`: any model Zoo knows, as a Keras model with verified weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo import model_dir
from zoo.errors import InvalidInputError
from zoo.refs import ModelRef, resolve

if TYPE_CHECKING:
    import keras


def load_model(
    name: str | Path | ModelRef,
    include_top: bool = True,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> keras.Model:
    """A Keras model with verified pretrained weights.

    Registry image models: the ImageNet classifier by default; `include_top=False` gives
    the pooled feature extractor (any input size); `num_classes=N` puts a new, untrained
    N-way head on the pretrained base. Registry text models: the keras-hub backbone. A
    fine-tuned model's folder (or the name it was recorded under) loads that model, in safe
    mode; `include_top=False` then gives a fine-tuned image model's features (pixels ->
    its base's pooled output).
    """
    ref = resolve(name)
    if ref.folder is not None:
        if num_classes is not None or input_shape is not None:
            raise InvalidInputError(
                f"num_classes and input_shape apply to registry models; {ref.name} is a "
                "fine-tuned model: fine-tune its base with the classes you need")
        if ref.takes_tokens:
            from zoo.text.classifier import load_end_to_end

            model = load_end_to_end(ref.folder)
        else:
            model = model_dir.load_keras(ref.folder)
        if include_top:
            return model
        if not ref.is_image:
            raise InvalidInputError(
                f"include_top=False applies to image models; {ref.name} is a {ref.task} model")
        from zoo.vision.build import features_model

        return features_model(model)
    if ref.spec.is_image:
        from zoo.vision.build import build_image_model

        return build_image_model(ref.spec, include_top, num_classes, input_shape)
    from zoo.text.encoder import load_backbone

    return load_backbone(ref.spec)
