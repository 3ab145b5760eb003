"""Weight files in the official on-disk format, made by the tests.

Official Keras application weights are legacy Keras h5 files (`layer_names` and
`weight_names` attributes, one group per layer). We write files in that same layout
from freshly initialised models, so the code path that loads official files is the
one exercised, and give the tests a manifest that pins their checksums.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from zoo.hub.manifest import load_manifest
from zoo.hub.registry import get_spec


def photo_batch(size: tuple[int, int], n: int = 32, seed: int = 0):
    """Random crops of scikit-image's sample photographs, as float pixels 0..255."""
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field()]
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side, :3])
        crops.append(np.asarray(crop.resize(size[::-1]), dtype="float32"))
    return np.stack(crops)


def calibrate_batchnorm(model, spec) -> None:
    """Set every BatchNorm's moving statistics from real photographs.

    A freshly initialised network has moving mean 0 and variance 1 everywhere, so in
    inference mode its activations collapse after a few blocks and the features carry
    nothing. Calibrating on real images (not the fine-tune data) gives the random
    network usable features, standing in for pretraining in offline tests.
    """
    import keras

    from zoo.vision.imagenet import preprocess

    batch = preprocess(photo_batch(spec.input.size), spec.input.preprocessing)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # moving stats := this batch's stats
    model(batch, training=True)
    for layer in norms:
        layer.momentum = 0.99


def write_legacy_h5(name: str, include_top: bool, path: Path, seed: int = 0) -> Path:
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    spec = get_spec(name)
    keras.utils.set_random_seed(seed)
    application = getattr(keras.applications, spec.architecture)
    model = application(
        weights=None, include_top=include_top, input_shape=(*spec.input.size, 3), **spec.kwargs
    )
    calibrate_batchnorm(model, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def digest(path: Path, algorithm: str = "md5") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, path.read_bytes()).hexdigest()}"


def origin_path(url: str) -> str:
    """The path below the storage host, which a mirror serves at the same place."""
    return url.split("storage.googleapis.com/", 1)[1]


def write_mirror(
    root: Path, files: dict[str, bytes | Path], manifest_out: Path, *, pin: str | None = "md5"
) -> Path:
    """Lay `files` (keyed by origin URL) out under `root` like the storage host, and
    write a manifest pinning their digests (`pin=None` leaves them unpinned)."""
    data = json.loads(load_manifest().path.read_text())
    data = copy.deepcopy(data)
    by_origin = {}
    for model in data["models"].values():
        for entry in model["files"].values():
            if entry.get("origin"):
                by_origin[entry["origin"]] = entry
    for asset in data["assets"].values():
        by_origin[asset["origin"]] = asset
    for url, content in files.items():
        target = root / origin_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            target.write_bytes(content.read_bytes())
        else:
            target.write_bytes(content)
        by_origin[url]["hash"] = digest(target, pin) if pin else None
        by_origin[url]["size"] = None
    manifest_out.write_text(json.dumps(data, indent=2))
    return manifest_out


def digit_pixels(size: int, start: int, count: int, classes: tuple[int, ...] = tuple(range(10))):
    """(images, labels): scikit-learn digits `start..start+count` of each of `classes`, RGB
    0..255; labels are positions in `classes`."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = [], []
    for position, digit in enumerate(classes):
        for image in digits.images[digits.target == digit][start : start + count]:
            grey = Image.fromarray((image / 16.0 * 255).astype(np.uint8))
            images.append(np.asarray(grey.resize((size, size), Image.Resampling.BILINEAR)))
            labels.append(position)
    pixels = np.repeat(np.stack(images)[..., None], 3, axis=-1).astype("float32")
    return pixels, np.array(labels)


def write_pretrained_on_digits(name: str, folder: Path, size: int = 32, epochs: int = 12, *,
                               final_size: int | None = None, final_epochs: int = 2,
                               classes: tuple[int, ...] = tuple(range(10)), count: int = 90
                               ) -> tuple[Path, Path]:
    """Official-format top and no-top files of `name`, pretrained on real data.

    There are no ImageNet weights offline, so the test "pretraining" is a short run on
    the first `count` (90) scikit-learn digits of each of `classes` (the fine-tune tests use
    later ones): real learned features, so a frozen-base fine-tune has something to transfer.
    Pretrained on some digits only, the base is a stand-in for real transfer to the others.
    With `final_size`, the network (built for any input size) then trains `final_epochs`
    more at that size: most of the learning happens at the cheap small size, and the last
    epochs adapt the features to the size they will be used at.
    Returns (top file, no-top file).
    """
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from zoo.vision.imagenet import preprocess

    spec = get_spec(name)
    keras.utils.set_random_seed(0)
    application = getattr(keras.applications, spec.architecture)
    shape = (size, size, 3) if final_size is None else (None, None, 3)
    base = application(weights=None, include_top=False, input_shape=shape, pooling="avg",
                       **spec.kwargs)
    model = keras.Sequential([keras.Input(shape), base,
                              keras.layers.Dense(len(classes), activation="softmax")])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    pixels, labels = digit_pixels(size, start=0, count=count, classes=classes)
    x = preprocess(pixels, spec.input.preprocessing)
    model.fit(x, labels, epochs=epochs, batch_size=64, verbose=0)
    if final_size is not None:
        size = final_size
        model.compile(keras.optimizers.Adam(0.001), "sparse_categorical_crossentropy")
        pixels, labels = digit_pixels(size, start=0, count=count, classes=classes)
        x = preprocess(pixels, spec.input.preprocessing)
        model.fit(x, labels, epochs=final_epochs, batch_size=32, verbose=0)
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    # Moving statistics := the mean of the training data's batch statistics, over chunks
    # small enough for large images: momentum i/(i+1) makes chunk i weigh 1/(i+1).
    chunk = max(8, min(512, 512 * 32 * 32 // (size * size)))
    for i, start in enumerate(range(0, min(len(x), 512), chunk)):
        for layer in norms:
            layer.momentum = i / (i + 1)
        base(x[start : start + chunk], training=True)
    for layer in norms:
        layer.momentum = 0.99
    top = application(weights=None, include_top=True, input_shape=(*spec.input.size, 3),
                      **spec.kwargs)
    trained = {layer.name: layer for layer in base.layers}
    for layer in top.layers:
        if layer.weights and layer.name in trained:
            layer.set_weights(trained[layer.name].get_weights())
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "top.h5", folder / "notop.h5")
    for path, network in zip(paths, (top, base), strict=True):
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, network)
    return paths
