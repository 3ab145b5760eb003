"""A Keras image model as OpenVINO IR, converted once and cached under ZOO_HOME.

Converting costs seconds (2-6 s for MobileNetV2, more for larger graphs); reading the IR
back costs a fraction of one. The cache key is a digest of what the IR computes: the
bytes of every weight, the sequence of layers with their configurations, the input size,
and the versions of OpenVINO, TensorFlow and this format. Hashing the weights in memory
rather than a weight file covers every model a runtime is handed (a registry model, a
fine-tuned model.keras, the feature extractor fine-tuning builds in memory) and changes
the key whenever any weight changes; for ResNet50 it costs about 0.1 s.

Layout, beside the weight cache:

    compiled/<key>/model.xml, model.bin   the IR, float32 weights
    compiled/<key>/meta.json              key inputs, the .bin's sha256 (checked on every use)
    compiled/<key>.incomplete-*/          a conversion in progress
    locks/compiled-<key>.lock             one conversion per key, across processes

As in zoo/download.py: a valid entry is used before anything is written (read-only
caches work), a conversion writes a private folder under the lock and renames it into
place whole, and a corrupt entry is converted again. Where the cache cannot be written
the model is converted in memory and nothing is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from zoo import config
from zoo.hub import cache

log = logging.getLogger("zoo")

FORMAT_VERSION = 1
XML, BIN, META = "model.xml", "model.bin", "meta.json"


def compiled_dir() -> Path:
    return config.zoo_home() / "compiled"


@dataclass(frozen=True)
class Conversion:
    """Where a model's IR came from, for the runtime report."""

    key: str
    path: Path | None  # the cached model.xml; None when converted in memory only
    cached: bool  # found on disk, not converted by this call
    seconds: float  # hashing plus converting or verifying

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path) if self.path else None,
                "cached": self.cached, "seconds": round(self.seconds, 3)}


def _leaf_layers(model: Any) -> list[Any]:
    import keras

    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if not isinstance(layer, keras.Model)]


def model_key(model: Any, size: tuple[int, int], openvino_version: str) -> str:
    """A sha256 of everything the converted model's outputs depend on (see above)."""
    import tensorflow as tf

    digest = hashlib.sha256()
    structure = {
        "format": FORMAT_VERSION, "openvino": openvino_version, "tensorflow": tf.__version__,
        "size": list(size), "inputs": str(model.input_shape), "outputs": str(model.output_shape),
        "layers": [[type(layer).__name__,
                    {k: v for k, v in layer.get_config().items() if k != "name"}]
                   for layer in _leaf_layers(model)],
    }
    digest.update(json.dumps(structure, sort_keys=True, default=str).encode())
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes() if value.ndim == 0 else value.data.cast("B"))
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    return cache.file_digest(path, "sha256")


def _valid(folder: Path) -> bool:
    """The entry is whole: its files are there and the weights are the bytes written."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        return (folder / XML).is_file() and _file_sha256(folder / BIN) == meta["bin_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _convert(model: Any, size: tuple[int, int], ov: Any) -> Any:
    """The OpenVINO model of `model(x, training=False)` for float32 (batch, H, W, 3)."""
    import tensorflow as tf

    function = tf.function(lambda x: model(x, training=False),
                           input_signature=[tf.TensorSpec((None, *size, 3), tf.float32)])
    return ov.convert_model(function.get_concrete_function())


def _write(ov_model: Any, ov: Any, folder: Path, key: str, size: tuple[int, int]) -> None:
    folder.mkdir(parents=True)
    ov.serialize(ov_model, str(folder / XML), str(folder / BIN))  # float32 as converted
    meta = {"format": FORMAT_VERSION, "key": key, "size": list(size),
            "openvino": ov.get_version(), "bin_sha256": _file_sha256(folder / BIN)}
    (folder / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def convert_cached(model: Any, size: tuple[int, int], ov: Any) -> tuple[Any, Conversion]:
    """(what `ov.Core.compile_model` takes: a cached model.xml or an in-memory model, how
    it was obtained). Converts at most once per key across processes."""
    started = time.perf_counter()
    key = model_key(model, size, ov.get_version())
    final = compiled_dir() / key
    if _valid(final):
        return final / XML, Conversion(key, final / XML, True, time.perf_counter() - started)
    try:
        cache.locks_dir().mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # read-only cache without this entry: convert, keep nothing
        log.warning("cannot write %s (%s); converting in memory", final.parent, e)
        return _convert(model, size, ov), Conversion(key, None, False,
                                                     time.perf_counter() - started)
    with FileLock(str(cache.locks_dir() / f"compiled-{key}.lock")):
        if _valid(final):  # another process converted it while this one waited
            return final / XML, Conversion(key, final / XML, True,
                                           time.perf_counter() - started)
        partial = final.with_name(f"{key}.incomplete-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            _write(_convert(model, size, ov), ov, partial, key, size)
            if final.exists():  # corrupt: it failed the check above
                shutil.rmtree(final)
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    log.info("converted %s to OpenVINO IR in %s", getattr(model, "name", "model"), final)
    return final / XML, Conversion(key, final / XML, False, time.perf_counter() - started)

