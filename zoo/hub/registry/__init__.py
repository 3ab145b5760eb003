"""The model registry: every model Zoo can fetch, build and serve, by name.

Names are lower snake case (`resnet50`, `mobilenet_v2_035_96`) with an optional
`.tag` for the weights (`resnet50.imagenet`); an untagged name means the default
weights. Families register their specs from their own module, beside their metadata,
into the table of zoo.hub.registry.table.
"""

from __future__ import annotations

import fnmatch

from zoo.errors import ModelNotFoundError
from zoo.hub.registry.table import REGISTRY as _REGISTRY
from zoo.hub.registry.table import register
from zoo.hub.spec import TASKS, ModelSpec


def _load_families() -> None:
    # Imported for their side effect of registering; kept here so importing
    # `zoo.hub.registry` alone is enough to see every model.
    from zoo.hub.registry import hf_text, keras_applications  # noqa: F401


def split_name(name: str) -> tuple[str, str | None]:
    """`resnet50.imagenet` -> (`resnet50`, `imagenet`)."""
    base, _, tag = name.strip().partition(".")
    return base.lower(), (tag.lower() or None)


def get_spec(name: str) -> ModelSpec:
    """The spec registered under `name` (a `.tag` must match the spec's weights)."""
    _load_families()
    base, tag = split_name(name)
    spec = _REGISTRY.get(base)
    if spec is None or (tag is not None and tag != spec.weights_tag):
        close = fnmatch.filter(_REGISTRY, f"*{base[:4]}*")[:5] if base else []
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}{hint} (run `zoo list` to see every registered model)"
        )
    return spec


def is_registered(name: str) -> bool:
    """Whether `name` (with or without its `.tag`) names a registry model."""
    _load_families()
    base, tag = split_name(str(name))
    spec = _REGISTRY.get(base)
    return spec is not None and (tag is None or tag == spec.weights_tag)


def list_models(pattern: str = "*", task: str | None = None) -> list[ModelSpec]:
    """Registered specs whose name matches the shell-style `pattern`, sorted by name."""
    _load_families()
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    pattern = pattern.lower()
    return [
        spec
        for name, spec in sorted(_REGISTRY.items())
        if fnmatch.fnmatchcase(name, pattern) and (task is None or spec.task == task)
    ]


__all__ = ["get_spec", "is_registered", "list_models", "register", "split_name"]
