"""Data-parallel feature extraction: phase 1's frozen forward pass sharded over Ray actors.

A fine-tune with cached features spends phase 1 running the frozen base once over every
image; the head then trains on those features in seconds. `ShardedFeatures` is a
zoo.finetuning.image.FeatureExtractor (zoo.finetune's `extract_features`): it cuts a split
into contiguous shards, one per `FeatureShard` actor, spread over the cluster's nodes
(Ray's SPREAD strategy), each running exactly the single-process function,
`frozen_features`, on its shard; the job gathers the features in order and trains the head
on them as before. Shard boundaries fall on multiples of the extraction batch, so every
image goes through the same batches as in a single process and the features, and so the
head, are the same (to float rounding; on one machine, bit for bit).

Splits under `min_images` stay in the calling process: starting actors (TensorFlow, the
base's weights) costs seconds that small datasets do not win back. Shards whose actor finds
no room on the cluster within `placement_timeout_s` run in the calling process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.finetuning.image import FEATURE_BATCH, frozen_features
from zoo.finetuning.image_data import Split
from zoo.hub.spec import ModelSpec


def shard_bounds(n: int, shards: int, batch: int = FEATURE_BATCH) -> list[tuple[int, int]]:
    """`n` items cut into at most `shards` contiguous [start, end) ranges of whole batches
    (the last may end short), as even as whole batches allow."""
    batches = math.ceil(n / batch)
    count = min(max(1, shards), batches)
    bounds, start = [], 0
    for i in range(count):
        size = batches // count + (1 if i < batches % count else 0)
        bounds.append((start * batch, min(n, (start + size) * batch)))
        start += size
    return bounds


def shard_of(split: Split, start: int, end: int, size: tuple[int, int]) -> Split:
    """Items [start, end) of `split`, with their pixels (decoded here when the split keeps
    only paths: the actors' nodes may not see this node's files)."""
    pixels = split.pixels[start:end] if split.pixels is not None else None
    if pixels is None:
        from zoo.vision.images import decode

        pixels = np.stack([decode(str(p), size) for p in split.paths[start:end]])
    return Split(list(split.paths[start:end]), split.labels[start:end], pixels)


class FeatureShard:
    """One shard's worker (a Ray actor): the frozen base on its node."""

    def __init__(self, spec: ModelSpec, size: tuple[int, int]):
        from zoo_server.scale.cluster import match_tensorflow_threads

        match_tensorflow_threads()
        self.spec, self.size = spec, size

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def features(self, split: Split) -> np.ndarray:
        return frozen_features(self.spec, self.size, split)


@dataclass
class ShardedFeatures:
    """A FeatureExtractor over `shards` Ray actors of `cpus` CPUs each. The actors start on
    the first split worth sharding and serve every later one of the same base and size (a
    job's training and validation splits); `close` ends them."""

    shards: int
    min_images: int = 2000
    cpus: float = 1.0
    placement_timeout_s: float = 120.0
    nodes: list[str] = field(default_factory=list)  # where the last sharded call's shards ran
    sharded_calls: int = 0  # splits it sharded (smaller ones ran in the calling process)
    _actors: dict[int, Any] = field(default_factory=dict, repr=False)  # shard -> placed actor
    _for: tuple[str, tuple[int, int]] | None = field(default=None, repr=False)

    def __call__(self, spec: ModelSpec, size: tuple[int, int], split: Split) -> np.ndarray:
        bounds = shard_bounds(len(split), self.shards)
        if len(split) < self.min_images:
            return frozen_features(spec, size, split)
        import ray

        self._start(spec, size)
        self.sharded_calls += 1
        running = {i: self._actors[i].features.remote(ray.put(shard_of(split, a, b, size)))
                   for i, (a, b) in enumerate(bounds) if i in self._actors}
        parts = [ray.get(running[i]) if i in running
                 else frozen_features(spec, size, shard_of(split, a, b, size))
                 for i, (a, b) in enumerate(bounds)]
        return np.concatenate(parts)

    def _start(self, spec: ModelSpec, size: tuple[int, int]) -> None:
        """One actor per shard, spread over the nodes; those Ray cannot place in time are
        dropped (their shards run here)."""
        import ray

        if self._for == (spec.name, size):
            return
        self.close()
        remote: Any = ray.remote(FeatureShard).options(num_cpus=self.cpus,
                                                       scheduling_strategy="SPREAD")
        actors = [remote.remote(spec, size) for _ in range(self.shards)]
        probes = {actor.node.remote(): i for i, actor in enumerate(actors)}
        placed, _ = ray.wait(list(probes), num_returns=len(probes),
                             timeout=self.placement_timeout_s)
        where = {probes[ref]: ray.get(ref) for ref in placed}
        for i, actor in enumerate(actors):
            if i in where:
                self._actors[i] = actor
            else:
                ray.kill(actor)
        self.nodes = [where.get(i, "") for i in range(self.shards)]
        self._for = (spec.name, size)

    def close(self) -> None:
        import ray

        for actor in self._actors.values():
            ray.kill(actor)
        self._actors.clear()
        self._for = None

    def __reduce__(self) -> tuple[Any, ...]:  # to a job's actor: the settings, not the actors
        return (ShardedFeatures, (self.shards, self.min_images, self.cpus,
                                  self.placement_timeout_s))
