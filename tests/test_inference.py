"""BatchNorm folding: the inference graph computes what the model computes, faster."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from zoo.vision.inference import compiled_image_call, fold_batchnorm, inference_model  # noqa: E402


def _trained_statistics(model, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics, as pretrained weights have (fresh
    layers are the identity map, which would fold to nothing and prove nothing)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape),
                               beta + rng.normal(0, 0.2, beta.shape),
                               mean + rng.normal(0, 0.2, mean.shape),
                               variance * rng.uniform(0.5, 2.0, variance.shape)])


def _count_bn(model) -> int:
    return sum(isinstance(layer, keras.layers.BatchNormalization)
               for layer in model._flatten_layers())


@pytest.mark.parametrize(
    ("architecture", "size", "all_folded"),
    [
        ("MobileNetV2", 64, True),  # depthwise convolutions
        ("ResNet50", 64, True),  # convolutions with a bias
        ("Xception", 71, True),  # separable convolutions
        ("EfficientNetB0", 64, True),
        ("DenseNet121", 64, False),  # BatchNorm before the convolution: only some fold
    ],
)
def test_folded_model_matches_the_original(architecture, size, all_folded) -> None:
    model = getattr(keras.applications, architecture)(
        weights=None, include_top=False, input_shape=(size, size, 3), pooling="avg")
    _trained_statistics(model)
    x = np.random.default_rng(1).uniform(0, 255, (3, size, size, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))

    folded, count = fold_batchnorm(model)

    before = _count_bn(model)
    assert count == before if all_folded else 0 < count < before
    assert _count_bn(folded) == before - count
    np.testing.assert_allclose(np.asarray(folded(x, training=False)), expected,
                               rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # The original is untouched and still computes the same.
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), expected)


def test_nested_models_fold_and_share_unfolded_layers() -> None:
    """A fine-tuned model is pixels -> preprocess -> base -> head: the base inside folds,
    and layers that do not change are the same objects (no copy of their weights)."""
    base = keras.applications.MobileNetV2(weights=None, include_top=False,
                                          input_shape=(48, 48, 3), pooling="avg", alpha=0.35)
    _trained_statistics(base)
    inputs = keras.Input((48, 48, 3))
    x = keras.Sequential([keras.layers.Rescaling(1 / 127.5, offset=-1.0)])(inputs)
    head = keras.Sequential([keras.layers.Dense(4, activation="softmax", name="predictions")])
    model = keras.Model(inputs, head(base(x, training=False)))
    images = np.random.default_rng(2).uniform(0, 255, (2, 48, 48, 3)).astype("float32")

    folded = inference_model(model)

    assert _count_bn(folded) == 0 and _count_bn(model) == 52
    np.testing.assert_allclose(np.asarray(folded(images)), np.asarray(model(images)), atol=1e-5)
    assert head in folded.layers  # shared, not copied


def test_sequential_pairs_fold_and_guards_hold() -> None:
    conv = keras.layers.Conv2D(4, 3, use_bias=False)
    with_activation = keras.layers.Conv2D(4, 3, activation="relu")
    model = keras.Sequential([keras.Input((8, 8, 2)), conv, keras.layers.BatchNormalization(),
                              with_activation, keras.layers.BatchNormalization()])
    _trained_statistics(model)
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 2)).astype("float32")

    folded, count = fold_batchnorm(model)

    assert count == 1  # a BatchNorm after an activation is not a linear map of the conv
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(model(x)), atol=1e-5)


def test_a_convolution_read_twice_is_not_folded() -> None:
    inputs = keras.Input((8, 8, 2))
    conv = keras.layers.Conv2D(4, 3)(inputs)
    normed = keras.layers.BatchNormalization()(conv)
    model = keras.Model(inputs, keras.layers.Add()([conv, normed]))
    _trained_statistics(model)
    folded, count = fold_batchnorm(model)
    assert count == 0 and folded is model


def test_nothing_to_fold_returns_the_same_model() -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert inference_model(model) is model


def test_compiled_call_takes_any_batch_size() -> None:
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, use_bias=False),
                              keras.layers.BatchNormalization(),
                              keras.layers.GlobalAveragePooling2D()])
    _trained_statistics(model)
    call = compiled_image_call(inference_model(model), (8, 8))
    for batch in (1, 5):
        x = np.random.default_rng(batch).uniform(0, 255, (batch, 8, 8, 3)).astype("float32")
        np.testing.assert_allclose(np.asarray(call(x)), np.asarray(model(x)), rtol=1e-5,
                                   atol=1e-4)
