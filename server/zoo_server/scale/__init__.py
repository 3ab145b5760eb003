"""Zoo on Ray (`zoo serve --ray`, the optional extra `zoo[ray]`).

The `zoo serve` process stays the front door (both APIs, auth, limits, the SQLite job
store, the model manager's decisions); the work moves to a Ray cluster:

    nodes     a Ray node in a process of its own (`ray start --block`): --ray auto, tests, bench
    cluster   connecting the server to Ray (and Ray Serve, with no proxies of its own)
    shared    the model store every node reaches: a shared folder or an fsspec URL
    replicas  each loaded model as a Ray Serve deployment of replicas, each batching its own
              requests; a loader whose `run` calls the deployment through its handle
    jobs      each fine-tune job as a Ray actor with declared CPUs and memory, resumed on
              another node from its last checkpoint when its node dies
    features  phase 1's frozen forward pass sharded over actors on every node

Nothing outside this package imports Ray, and only `zoo serve --ray` imports this package,
so a server without the extra is the server it always was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo_server.errors import ServerError

RAY_MIN_VERSION = (2, 60)
INSTALL_HINT = "pip install 'zoo[ray]' (Ray 2.60 or later)"


def require_ray() -> None:
    """Fail with one line that names the fix when Ray is missing or too old."""
    try:
        import ray
    except ImportError:
        raise ServerError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    version = tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())
    if version < RAY_MIN_VERSION:
        raise ServerError(f"--ray needs Ray 2.60 or later, found {ray.__version__}: "
                          f"{INSTALL_HINT}")


def attach(config: Any, home: Path, metrics: Any) -> tuple[Any, dict[str, Any], Any]:
    """Connect `zoo serve` to Ray: (the cluster, the model manager's loaders, the job
    manager's launcher). The cluster's `close` takes it all down again."""
    from zoo_server.loaders import LOADERS
    from zoo_server.scale.cluster import RayCluster
    from zoo_server.scale.features import ShardedFeatures
    from zoo_server.scale.jobs import RayLauncher
    from zoo_server.scale.replicas import ReplicaBoard, ReplicaCollector, ray_loaders

    cluster = RayCluster(config, home)
    try:
        board = ReplicaBoard()
        loaders = ray_loaders(LOADERS, cluster, config, board)
        metrics.registry.register(ReplicaCollector(board))
        shards = (ShardedFeatures(config.feature_shards, config.feature_shard_min,
                                  config.job_cpus) if config.feature_shards else None)
        launcher = RayLauncher(cluster, config, home, shards)
    except BaseException:
        cluster.close()
        raise
    return cluster, loaders, launcher
