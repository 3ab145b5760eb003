"""The model registry: every model Zoo can fetch, build and serve, by name.

Names are lower snake case (`resnet50`, `mobilenet_v2_035_96`) with an optional
`.tag` for the weights (`resnet50.imagenet`); an untagged name means the default
weights. Families register their specs from their own module, beside their metadata.
"""

from __future__ import annotations

import fnmatch

from zoo.errors import ModelNotFoundError
from zoo.hub.spec import TASKS, ModelSpec

_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    if spec.task not in TASKS:
        raise ValueError(f"model {spec.name!r} has unknown task {spec.task!r}")
    _REGISTRY[spec.name] = spec
    return spec


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
