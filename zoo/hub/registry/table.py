"""The table every model family registers its specs into (zoo.hub.registry reads it)."""

from __future__ import annotations

from zoo.hub.spec import TASKS, ModelSpec

REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    if spec.task not in TASKS:
        raise ValueError(f"model {spec.name!r} has unknown task {spec.task!r}")
    REGISTRY[spec.name] = spec
    return spec
