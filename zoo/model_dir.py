"""The Zoo model folder: the format of every model Zoo writes, and the index of local ones.

A model folder holds `model.keras`, `zoo.json` (task, labels, input spec, the base it came
from, hyper-parameters, metrics; written last, so its presence marks a complete model),
`labels.txt` and the reports. Every folder `zoo finetune` writes is also recorded by name
in an index under `ZOO_HOME`, so `zoo list --local` finds it and `zoo predict NAME` works
by name as well as by path. Registry names are never recorded: a local fine-tune cannot
shadow a pretrained model. `model.keras` is always loaded in Keras safe mode: a folder
someone sent you cannot run code through a Lambda layer. Nothing here imports
TensorFlow except `load_keras` and `save_keras`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from zoo import config
from zoo.errors import InvalidInputError, ModelNotFoundError
from zoo.hub.registry import is_registered

if TYPE_CHECKING:
    import keras

META_FILE = "zoo.json"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"  # validation metrics, per-class scores, the confusion matrix
FORMAT_VERSION = 1
# zoo.json's input.kind for a text classifier whose model.keras takes token ids and holds
# its own fine-tuned backbone (absent, or "embedding": the model is a head on the base's
# sentence embeddings).
TOKENS = "tokens"


def index_path() -> Path:
    """Where the local index (recorded name -> folder) lives."""
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


def read_metrics(folder: str | Path) -> dict[str, Any] | None:
    """metrics.json of a fine-tuned model (see zoo.finetuning.report), None if unreadable."""
    try:
        data = json.loads((Path(folder).expanduser() / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def takes_tokens(meta: dict[str, Any] | None) -> bool:
    """True for an end-to-end text classifier (see zoo.text.classifier)."""
    return isinstance(meta, dict) and (meta.get("input") or {}).get("kind") == TOKENS


def _read_index() -> dict[str, str]:
    try:
        return dict(json.loads(index_path().read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def check_record_name(name: str, flag: str = "--name") -> None:
    """A name a local model may be recorded under: not empty, not a registry model's."""
    if not name or not name.strip() or "/" in name:
        raise InvalidInputError(f"{flag} {name!r} cannot name a model; give a plain name")
    if is_registered(name):
        raise InvalidInputError(
            f"{flag} {name!r} is the name of a registry model, which a local model may not "
            "shadow; pass --name with another name")


def record(folder: Path, name: str) -> None:
    """Remember a finished fine-tune under its name (the latest one wins)."""
    check_record_name(name)
    path = index_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        index = _read_index()
        index[name] = str(folder.resolve())
        tmp = path.with_name("index.json.tmp")
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)


def resolve(name_or_dir: str | Path) -> Path | None:
    """The model folder meant by a path or a recorded name; None if it is neither.

    Registry names are the caller's to try first (zoo.refs.resolve does): the index never
    holds one. A path that exists but is not a model folder is an error that says so.
    """
    path = Path(name_or_dir).expanduser()
    if is_model_dir(path):
        return path
    recorded = _read_index().get(str(name_or_dir))
    if recorded and not is_registered(str(name_or_dir)) and is_model_dir(recorded):
        return Path(recorded)
    if path.exists() or "/" in str(name_or_dir):
        raise ModelNotFoundError(
            f"{name_or_dir} is not a Zoo model folder (no {META_FILE} and {MODEL_FILE}); "
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


def load_keras(folder: str | Path) -> keras.Model:
    """A folder's `model.keras`, in safe mode and uncompiled. Callers whose model holds
    registered layers (keras-hub backbones, zoo.text.layers) import them first."""
    import keras

    path = Path(folder).expanduser() / MODEL_FILE
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (OSError, ValueError, TypeError) as e:
        raise InvalidInputError(f"cannot load {path} (safe mode): {e}") from None


def save_keras(model: keras.Model, folder: Path) -> Path:
    """Write `model.keras` whole or not at all (a temporary file, then one rename)."""
    path = folder / MODEL_FILE
    tmp = folder / "model.tmp.keras"
    model.save(tmp)
    tmp.replace(path)
    return path


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write `zoo.json`; last of all, since its presence marks a complete model."""
    meta = {"format_version": FORMAT_VERSION, **meta}
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n",
                   encoding="utf-8")
    tmp.replace(folder / META_FILE)


def write_labels(folder: Path, labels: list[str]) -> None:
    (folder / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
