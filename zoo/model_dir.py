"""Fine-tuned model directories: a model Zoo made is itself a Zoo model.

A directory holds `model.keras`, `zoo.json` (task, labels, input spec, the base it came
from, hyper-parameters, metrics) and the reports. Every fine-tune is also recorded in
an index under `ZOO_HOME`, so `zoo list --local` finds it and `zoo predict NAME` works by
name as well as by path. Models are always loaded in Keras safe mode: a directory
someone sent you cannot run arbitrary code through a Lambda layer. An end-to-end text
classifier (zoo.json input kind "tokens") holds a keras-hub backbone and Zoo's pooling
layer, registered classes that `load` imports first (keras_hub, zoo.text.layers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from zoo import config
from zoo.errors import InvalidInputError, ModelNotFoundError

if TYPE_CHECKING:
    import keras

META_FILE = "zoo.json"
MODEL_FILE = "model.keras"
FORMAT_VERSION = 1
# zoo.json's input.kind for a text classifier whose model.keras takes token ids and holds
# its own fine-tuned backbone (absent, or "embedding": the model is a head on the base's
# sentence embeddings).
TOKENS = "tokens"


def _index_path() -> Path:
    return config.zoo_home() / "finetuned" / "index.json"


def is_model_dir(path: str | Path) -> bool:
    folder = Path(path).expanduser()
    return (folder / META_FILE).is_file() and (folder / MODEL_FILE).is_file()


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder).expanduser() / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"{path} is not a readable Zoo model description: {e}") from None
    if meta.get("format_version") != FORMAT_VERSION or "labels" not in meta:
        raise InvalidInputError(f"{path} is not a Zoo fine-tuned model (format {FORMAT_VERSION})")
    return dict(meta)


def takes_tokens(meta: dict[str, Any] | None) -> bool:
    """True for an end-to-end text classifier (see zoo.text.classifier)."""
    return isinstance(meta, dict) and (meta.get("input") or {}).get("kind") == TOKENS


def _read_index() -> dict[str, str]:
    try:
        return dict(json.loads(_index_path().read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def record(folder: Path, name: str) -> None:
    """Remember a finished fine-tune under its name (the latest one wins)."""
    index_path = _index_path()
    index_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(index_path) + ".lock"):
        index = _read_index()
        index[name] = str(folder.resolve())
        tmp = index_path.with_name("index.json.tmp")
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(index_path)


def resolve(name_or_dir: str | Path) -> Path | None:
    """The model directory meant by a path or a recorded name; None if it is neither."""
    path = Path(name_or_dir).expanduser()
    if is_model_dir(path):
        return path
    recorded = _read_index().get(str(name_or_dir))
    if recorded and is_model_dir(recorded):
        return Path(recorded)
    if path.exists() or "/" in str(name_or_dir):
        raise ModelNotFoundError(
            f"{name_or_dir} is not a Zoo model directory (no {META_FILE} and {MODEL_FILE}); "
            "pass the --out folder of `zoo finetune`"
        )
    return None


def list_local() -> list[dict[str, Any]]:
    """Every recorded fine-tune that still exists, with its headline facts."""
    rows = []
    for name, folder in sorted(_read_index().items()):
        if not is_model_dir(folder):
            continue
        meta = read_meta(folder)
        rows.append({
            "name": name,
            "path": folder,
            "task": meta.get("task"),
            "base": meta.get("base"),
            "classes": len(meta["labels"]),
            "accuracy": (meta.get("metrics") or {}).get("accuracy"),
            "created": meta.get("created"),
        })
    return rows


def load(folder: str | Path) -> keras.Model:
    import keras

    path = Path(folder).expanduser() / MODEL_FILE
    try:
        meta = read_meta(folder)
    except InvalidInputError:
        meta = None
    if takes_tokens(meta):  # register the keras-hub backbone and zoo's pooling layers
        import keras_hub  # noqa: F401

        import zoo.text.layers  # noqa: F401
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"cannot load {path} (safe mode): {e}") from None
