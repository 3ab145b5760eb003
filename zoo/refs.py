"""A model name resolved once, into what the rest of a call carries.

`resolve("resnet50")`, `resolve("./my-model")` and `resolve("pets")` (a recorded local
fine-tune) each give a `ModelRef`: the registry spec, or a model folder with its zoo.json
and the spec of the base it came from. Loading, fetching, classifying and fine-tuning take
the ref as it is instead of turning it back into a string and resolving it again.

Registry names always win: a local fine-tune recorded or saved under a registry name never
shadows the pretrained model (a folder is still reachable by its path, `./mobilenet_v2`).
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import model_dir
from zoo.errors import ModelNotFoundError
from zoo.hub.registry import get_spec, is_registered
from zoo.hub.spec import IMAGE_CLASSIFICATION, TEXT_CLASSIFICATION, ModelSpec


@dataclass(frozen=True)
class ModelRef:
    """A registry model (`folder` is None) or a Zoo model folder (`spec` is its base's)."""

    name: str
    spec: ModelSpec
    folder: Path | None = None
    meta: dict[str, Any] | None = None  # the folder's zoo.json

    @property
    def is_folder(self) -> bool:
        return self.folder is not None

    @property
    def task(self) -> str:
        if self.meta is not None:
            return str(self.meta.get("task") or IMAGE_CLASSIFICATION)
        return self.spec.task

    @property
    def is_image(self) -> bool:
        return self.task == IMAGE_CLASSIFICATION

    @property
    def is_text_classifier(self) -> bool:
        """A fine-tuned text classifier (registry text models are backbones)."""
        return self.is_folder and self.task == TEXT_CLASSIFICATION

    @property
    def takes_tokens(self) -> bool:
        """An end-to-end text classifier, whose model.keras holds its own backbone."""
        return model_dir.takes_tokens(self.meta)

    @property
    def labels(self) -> list[str] | None:
        return [str(x) for x in self.meta["labels"]] if self.meta is not None else None

    @property
    def num_classes(self) -> int | None:
        return len(self.meta["labels"]) if self.meta is not None else self.spec.head.num_classes

    @property
    def image_size(self) -> tuple[int, int] | None:
        if self.meta is not None:
            size = (self.meta.get("input") or {}).get("size")
            return (int(size[0]), int(size[1])) if size and self.is_image else None
        return self.spec.input.size

    def describe(self) -> str:
        return str(self.folder) if self.folder is not None else self.spec.name


def registry(name: str | ModelSpec) -> ModelRef:
    """The ref of a registry model."""
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    return ModelRef(spec.name, spec)


def folder(path: str | Path, name: str | None = None) -> ModelRef:
    """The ref of a model folder known to be one (the server's store, a fine-tune's --out)."""
    path = Path(path)
    meta = model_dir.read_meta(path)
    try:
        base = get_spec(str(meta.get("base")))
    except ModelNotFoundError:
        raise ModelNotFoundError(
            f"{path} was fine-tuned from {meta.get('base')!r}, which this version of Zoo does "
            "not know") from None
    return ModelRef(name or str(meta.get("name") or path.name), base, path, meta)


def resolve(name: str | Path | ModelRef) -> ModelRef:
    """A registry name, a model folder's path, or a recorded local name -> its ModelRef."""
    if isinstance(name, ModelRef):
        return name
    text = str(name)
    if isinstance(name, str) and is_registered(text):
        return registry(text)
    path = model_dir.resolve(name)
    if path is not None:
        return folder(path)
    return registry(text)  # raises ModelNotFoundError with close matches


__all__ = ["ModelRef", "folder", "registry", "resolve"]
