"""Compiled inference graphs for image models, with BatchNorm folded away.

At inference a BatchNormalization layer is a fixed per-channel affine map. When it
directly follows a linear convolution or dense layer whose output nothing else reads,
the map folds into that layer's kernel and bias: the same function with one pass over
the activations fewer per block. TF-Lite and TensorRT do this when they convert a model;
plain Keras does not. On this CPU it makes MobileNetV2 at 160 px about 1.8x faster
(`bench/finetune.py` prints the figure), and the outputs agree to float rounding.

The folded model shares every other layer (and its weights) with the original, so it
costs only the folded kernels' memory. It is an inference graph, not a training or
saving format: the training code and `.keras` files always use the original model.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("zoo")


def _linear_layer_types() -> tuple[Any, ...]:
    import keras

    return (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
            keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Dense)


def _foldable(layer: Any, bn: Any) -> bool:
    """`bn` can fold into `layer`: linear, channels last, float32, its only reader is `bn`."""
    import keras

    if not isinstance(layer, _linear_layer_types()) or not isinstance(
            bn, keras.layers.BatchNormalization):
        return False
    if isinstance(layer, keras.layers.Conv2DTranspose | keras.layers.Conv1DTranspose
                  | keras.layers.Conv3DTranspose):
        return False  # their kernels keep output channels on another axis
    config = layer.get_config()
    rank = getattr(bn.input_spec, "ndim", None)  # set when the layer was built
    last_axis = bn.axis == -1 or (rank is not None and bn.axis == rank - 1)
    return (
        config.get("activation", "linear") == "linear"
        and config.get("data_format", "channels_last") == "channels_last"
        and last_axis
        and layer.dtype_policy.name == "float32"
        and bn.dtype_policy.name == "float32"
        and len(layer._inbound_nodes) == 1
        and len(layer._outbound_nodes) == 1
        and len(bn._inbound_nodes) == 1
    )


def _folded_copy(layer: Any, bn: Any) -> Any:
    """A copy of `layer` with a bias and `bn`'s affine map folded into kernel and bias."""
    import keras

    config = layer.get_config()
    config["use_bias"] = True
    for key in ("kernel_initializer", "depthwise_initializer", "pointwise_initializer",
                "bias_initializer"):
        if key in config:
            config[key] = "zeros"  # overwritten below; random draws would only cost time
    copy = layer.__class__.from_config(config)
    copy.build(layer.input.shape)
    weights = {w.path.rsplit("/", 1)[-1]: np.asarray(w.numpy(), dtype="float64")
               for w in layer.weights}
    gamma = bn.gamma.numpy().astype("float64") if bn.scale else 1.0
    beta = bn.beta.numpy().astype("float64") if bn.center else 0.0
    scale = gamma / np.sqrt(bn.moving_variance.numpy().astype("float64") + bn.epsilon)
    bias = (weights.get("bias", 0.0) - bn.moving_mean.numpy().astype("float64")) * scale + beta
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = weights["kernel"]
        kh, kw, channels, multiplier = kernel.shape
        values = {"kernel": (kernel.reshape(kh, kw, channels * multiplier) * scale).reshape(
            kernel.shape)}
    elif isinstance(layer, keras.layers.SeparableConv2D):
        values = {"depthwise_kernel": weights["depthwise_kernel"],
                  "pointwise_kernel": weights["pointwise_kernel"] * scale}
    else:
        values = {"kernel": weights["kernel"] * scale}
    values["bias"] = np.broadcast_to(bias, copy.bias.shape)
    for variable in copy.weights:
        variable.assign(values[variable.path.rsplit("/", 1)[-1]].astype("float32"))
    return copy


@functools.cache
def _passthrough_class() -> Any:
    import keras

    class FoldedBatchNorm(keras.layers.Layer):
        """Where a folded BatchNormalization was: returns its input unchanged."""

        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            return inputs

    return FoldedBatchNorm


def _passthrough(name: str) -> Any:
    return _passthrough_class()(name=name)


def fold_batchnorm(model: Any) -> tuple[Any, int]:
    """(the model with foldable BatchNorm layers folded, how many were folded); nested
    models are folded too. A model with nothing to fold comes back as itself."""
    import keras

    if isinstance(model, keras.Sequential):
        return _fold_sequential(model)
    if not _is_functional(model):
        return model, 0
    pairs: dict[int, Any] = {}  # id(linear layer) -> the BatchNorm that follows it
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and len(layer._inbound_nodes) == 1:
            parents = layer._inbound_nodes[0].parent_nodes
            if len(parents) == 1 and _foldable(parents[0].operation, layer):
                pairs[id(parents[0].operation)] = layer
    folded_bns = {id(bn) for bn in pairs.values()}
    nested: dict[int, tuple[Any, int]] = {
        id(layer): fold_batchnorm(layer) for layer in model.layers if isinstance(layer, keras.Model)
    }
    count = len(pairs) + sum(n for _, n in nested.values())
    if count == 0:
        return model, 0

    def replace(layer: Any) -> Any:
        if id(layer) in pairs:
            return _folded_copy(layer, pairs[id(layer)])
        if id(layer) in folded_bns:
            return _passthrough(layer.name)
        if id(layer) in nested:
            return nested[id(layer)][0]
        return layer  # shared: same object, same weights

    return keras.models.clone_model(model, clone_function=replace), count


def _is_functional(model: Any) -> bool:
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def _fold_sequential(model: Any) -> tuple[Any, int]:
    import keras

    layers, count, i = [], 0, 0
    source = list(model.layers)
    while i < len(source):
        layer = source[i]
        after = source[i + 1] if i + 1 < len(source) else None
        if after is not None and _foldable(layer, after):
            layers.append(_folded_copy(layer, after))
            count, i = count + 1, i + 2
            continue
        if isinstance(layer, keras.Model):
            layer, n = fold_batchnorm(layer)
            count += n
        layers.append(layer)
        i += 1
    if count == 0:
        return model, 0
    inputs = [keras.Input(model.input_shape[1:])] if _has_input(model) else []
    return keras.Sequential([*inputs, *layers], name=model.name), count


def _has_input(model: Any) -> bool:
    try:
        model.input_shape  # noqa: B018
    except (AttributeError, ValueError):
        return False
    return True


def inference_model(model: Any) -> Any:
    """`model` with its BatchNorm folded (see above), or `model` itself when there is
    nothing to fold or its graph is one the folding does not understand."""
    try:
        folded, count = fold_batchnorm(model)
    except Exception as e:  # an unusual graph: serve it as it is
        log.debug("BatchNorm folding skipped for %s: %s", getattr(model, "name", model), e)
        return model
    if count:
        log.debug("%s: %d BatchNorm layers folded", getattr(model, "name", model), count)
    return folded


def compiled_image_call(model: Any, size: tuple[int, int]) -> Callable[[Any], Any]:
    """`model(x, training=False)` for float32 (batch, H, W, 3) as one traced graph for any
    batch size: eager calls run op by op and cost several times more."""
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False),
                       input_signature=[tf.TensorSpec((None, *size, 3), tf.float32)])
