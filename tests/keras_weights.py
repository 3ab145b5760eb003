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

from zoo.manifest import load_manifest
from zoo.registry import get_spec


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
