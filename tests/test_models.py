"""`load_model` builds the Keras application and loads official-format files from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.keras_weights import write_legacy_h5, write_mirror
from tests.servers.static import StaticServer
from zoo.hub.manifest import load_manifest

pytestmark = pytest.mark.slow
MODEL = "mobilenet_v2_035_96"


@pytest.fixture(scope="module")
def official_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Top and no-top weights in the legacy Keras h5 layout, plus a class index."""
    folder = tmp_path_factory.mktemp("official")
    entry = load_manifest().model(MODEL)
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    (folder / "index.json").write_text(json.dumps(index))
    return {
        entry.files["top"].origin: write_legacy_h5(MODEL, True, folder / "top.h5", seed=1),
        entry.files["notop"].origin: write_legacy_h5(MODEL, False, folder / "notop.h5", seed=1),
        load_manifest().asset("imagenet_class_index").origin: folder / "index.json",
    }


@pytest.fixture()
def served(official_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "storage"
    manifest = write_mirror(root, official_files, tmp_path / "manifest.json")
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))
    with StaticServer(root) as server:
        monkeypatch.setenv("ZOO_KERAS_MIRROR", server.url)
        yield server


def reference_model(official_files, include_top: bool):
    """The same file loaded by Keras itself, bypassing Zoo."""
    import keras

    model = keras.applications.MobileNetV2(
        weights=None, include_top=include_top, input_shape=(96, 96, 3), alpha=0.35
    )
    entry = load_manifest().model(MODEL).files["top" if include_top else "notop"]
    model.load_weights(official_files[entry.origin])
    return model


def images(n: int = 2) -> np.ndarray:
    from skimage import data, transform

    photos = [data.astronaut(), data.chelsea(), data.coffee()][:n]
    return np.stack([transform.resize(p, (96, 96), preserve_range=True) for p in photos])


def test_load_model_with_top_matches_the_weights_file(served, official_files) -> None:
    model = zoo.load_model(MODEL)
    x = zoo.preprocess_input(MODEL, images())
    expected = reference_model(official_files, include_top=True)(x, training=False)
    np.testing.assert_allclose(model(x, training=False), expected, atol=1e-5)
    decoded = zoo.decode_predictions(np.asarray(expected), top=3)
    best = int(np.argmax(expected[0]))
    assert decoded[0][0][:2] == (f"n{best:08d}", f"class_{best}")
    assert len(decoded) == 2 and len(decoded[0]) == 3


def test_feature_extractor_and_new_head(served, official_files) -> None:
    features = zoo.load_model(MODEL, include_top=False, input_shape=(128, 128, 3))
    assert features.output_shape == (None, 1280)
    classifier = zoo.load_model(MODEL, num_classes=10)
    assert classifier.output_shape == (None, 10)
    # The base of the new classifier carries the pretrained (no-top) weights.
    reference = reference_model(official_files, include_top=False)
    first_conv = next(w for w in reference.weights if "Conv1" in w.path)
    loaded = next(w for w in classifier.weights if "Conv1" in w.path)
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(first_conv))


def test_with_top_rejects_other_input_sizes(served) -> None:
    with pytest.raises(zoo.InvalidInputError, match="include_top=False"):
        zoo.load_model(MODEL, input_shape=(128, 128, 3))
