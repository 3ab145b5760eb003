"""Zoo on Ray wired into a server: the cluster, the model manager's loaders, the launcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def attach(config: Any, home: Path, metrics: Any) -> tuple[Any, dict[str, Any], Any]:
    """Connect `zoo serve` to Ray: (the cluster, the model manager's loaders, the job
    manager's launcher). The cluster's `close` takes it all down again."""
    from zoo_server.loaders import loaders
    from zoo_server.scale.cluster import RayCluster
    from zoo_server.scale.features import ShardedFeatures
    from zoo_server.scale.jobs import RayLauncher
    from zoo_server.scale.replicas import ReplicaBoard, ReplicaCollector, ray_loaders

    cluster = RayCluster(config, home)
    try:
        board = ReplicaBoard()
        model_loaders = ray_loaders(loaders(config.runtime_for), cluster, config, board)
        metrics.registry.register(ReplicaCollector(board))
        shards = (ShardedFeatures(config.feature_shards, config.feature_shard_min,
                                  config.job_cpus) if config.feature_shards else None)
        launcher = RayLauncher(cluster, config, home, shards)
    except BaseException:
        cluster.close()
        raise
    return cluster, model_loaders, launcher
