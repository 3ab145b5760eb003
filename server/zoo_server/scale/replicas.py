"""Each loaded model as a Ray Serve deployment of replicas, called through its handle.

The model manager still decides what is loaded, when, and what is evicted; with --ray its
loaders are `RayLoader`s. A RayLoader's `build` deploys the model as a Serve application
(`--replicas N`, or autoscaled between `--min-replicas` and `--max-replicas` by queued
calls), each replica a `ModelReplica` that builds the model with Zoo's own loader of that
kind and batches what reaches it with Zoo's own Batcher (`--max-batch-size`,
`--max-queue-delay-ms`, `--batch-threads`: dynamic batching inside each replica). Its
`run` sends a batch through the deployment's handle, which routes it to the less loaded of
two replicas. The front door keeps its own batcher per model for what it already did
(a bounded queue, deadlines, cancelled clients, metrics), with enough threads to keep
every replica busy, and decodes images to uint8 pixels: a quarter of the bytes of the
float32 input, which each replica prepares itself.

Memory: `--memory-budget-mb` keeps its meaning per replica. A model counts once, with one
replica's weights (what each replica holds), and every replica reserves that much of its
node's Ray `memory` resource, so Ray places it only where it fits. Unloading a model
deletes its deployment.

Load: every reply carries its replica's counters (calls answered, inputs, batches, queued
inputs, calls in flight); `GetModel` and `/metrics` report them per replica.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo import model_dir
from zoo_server.batching import Batcher
from zoo_server.config import ServerConfig
from zoo_server.errors import ModelUnloadedError, ServerError, first_line
from zoo_server.loaders import Built, Loader, build
from zoo_server.logs import log_event
from zoo_server.scale.cluster import RayCluster
from zoo_server.scale.shared import SharedStore
from zoo_server.store import Resolved

REPLICA_ACTOR = "SERVE_REPLICA::"
# Batches the front door keeps in flight per replica, per --batch-threads: twice as many as
# the replica runs at once, so the next one is already there when one finishes (a call's
# round trip is milliseconds the replica would otherwise sit idle).
IN_FLIGHT = 2
DEPLOYMENT = "model"


@dataclass
class ReplicaLoad:
    """One replica's counters, as its last reply (or its start) reported them."""

    replica: str
    node: str = ""
    requests: int = 0  # calls it answered (each a batch the front door sent)
    inputs: int = 0  # images or texts in them
    batches: int = 0  # compiled calls it ran (its own batcher merges concurrent calls)
    queued: int = 0  # inputs waiting in its batcher
    in_flight: int = 0  # calls it was serving


class ModelReplica:
    """One replica (a Ray actor that Serve manages): the model, built by Zoo's loader of its
    kind on this node, and a batcher over it."""

    def __init__(self, kind: str, resolved: Resolved, store_url: str | None,
                 store_key: str | None, batching: dict[str, Any], runtime: str = "tf"):
        import ray
        from ray import serve

        from zoo import config as zoo_config
        from zoo_server.loaders import loaders
        from zoo_server.scale.cluster import match_tensorflow_threads

        match_tensorflow_threads()
        if store_key is not None and store_url is not None:  # a fine-tuned model
            local = zoo_config.zoo_home() / "ray-models" / store_key.replace("/", "-")
            path = SharedStore(store_url).get_dir(store_key, local)
            resolved = dataclasses.replace(resolved, path=path)
        self.built = build(loaders(lambda name: runtime)[kind], resolved)
        self.batcher = Batcher(f"{resolved.describe()} ({kind})", self.built.run, **batching)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()
        self.requests = self.inputs = self.in_flight = 0
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        b = self.built
        return {"memory": b.memory, "size": b.size, "labels": b.labels, "dim": b.dim,
                "seconds": b.seconds, "runtime": b.runtime, "load": self.load()}

    def load(self) -> dict[str, Any]:
        return {"replica": self.replica, "node": self.node, "requests": self.requests,
                "inputs": self.inputs, "batches": self.batcher.batches,
                "queued": self.batcher.queued, "in_flight": self.in_flight}

    async def __call__(self, inputs: list[Any]) -> tuple[Any, dict[str, Any]]:
        prepare = self.built.prepare
        if prepare is not None:  # uint8 pixels from the front door
            inputs = [prepare(x) for x in inputs]
        with self._lock:
            self.in_flight += 1
        try:
            outputs = await asyncio.wrap_future(self.batcher.submit(inputs))
        finally:
            with self._lock:
                self.in_flight -= 1
                self.requests += 1
                self.inputs += len(inputs)
        return outputs, self.load()


class Replicas:
    """The front door's view of one deployment: which replicas run, and their last load."""

    def __init__(self, app: str, model: str):
        self.app, self.model = app, model
        self._loads: dict[str, ReplicaLoad] = {}
        self._lock = threading.Lock()

    def record(self, load: dict[str, Any]) -> None:
        """Keep a replica's newest counters. Replies from concurrent calls reach the front door
        in any order, so a snapshot older than the one held (fewer calls answered) is dropped."""
        with self._lock:
            held = self._loads.get(load["replica"])
            if held is not None and load["requests"] < held.requests:
                return
            self._loads[load["replica"]] = ReplicaLoad(**load)

    def running(self) -> list[str]:
        """The ids of this deployment's replica actors alive now (from Ray's GCS)."""
        import ray

        prefix = f"{REPLICA_ACTOR}{self.app}#{DEPLOYMENT}#"
        return sorted(a["name"][len(prefix):] for a in ray.util.list_named_actors(True)
                      if a["name"].startswith(prefix))

    def loads(self) -> list[ReplicaLoad]:
        running = self.running()
        with self._lock:
            return [self._loads.get(r) or ReplicaLoad(r) for r in running]


class ReplicaBoard:
    """Every deployed model's Replicas, for GetModel and /metrics."""

    def __init__(self) -> None:
        self._models: dict[str, Replicas] = {}
        self._lock = threading.Lock()

    def add(self, replicas: Replicas) -> None:
        with self._lock:
            self._models[replicas.app] = replicas

    def remove(self, app: str) -> None:
        with self._lock:
            self._models.pop(app, None)

    def all(self) -> list[Replicas]:
        with self._lock:
            return list(self._models.values())


class RayLoader(Loader):
    """A loader of one kind whose models run as Serve deployments on the cluster."""

    def __init__(self, inner: Loader, cluster: RayCluster, config: ServerConfig,
                 board: ReplicaBoard):
        self.inner, self.cluster, self.config, self.board = inner, cluster, config, board
        self.kind = inner.kind

    def check(self, resolved: Resolved) -> None:
        self.inner.check(resolved)

    def estimate_bytes(self, resolved: Resolved) -> int:
        return self.inner.estimate_bytes(resolved)

    def app_name(self, resolved: Resolved) -> str:
        return self.cluster.app_name(self.kind, resolved.name, f"v{resolved.version}")

    def _publish(self, resolved: Resolved) -> str | None:
        """A fine-tuned model's folder in the model store (copied there once), so replicas on
        any node can load it; None for a registry model, which every node fetches itself."""
        if resolved.path is None:
            return None
        # Named by this server and by its zoo.json (which says when and how it was trained),
        # so neither another server's model of the same name nor a stale copy is taken.
        meta = hashlib.sha256((resolved.path / model_dir.META_FILE).read_bytes()).hexdigest()
        key = f"models/{self.cluster.prefix}/{resolved.name}/{resolved.version}-{meta[:12]}"
        if not self.cluster.store.has(key):
            self.cluster.store.put_dir(resolved.path, key, skip=("checkpoints",))
        return key

    def build(self, resolved: Resolved) -> Built:
        from ray import serve
        from ray.exceptions import RayError, RayTaskError
        from ray.serve.exceptions import RayServeException

        config = self.config
        lowest, highest = config.replica_bounds
        key = self._publish(resolved)
        options: dict[str, Any] = {
            "name": DEPLOYMENT,
            "ray_actor_options": {"num_cpus": config.replica_cpus,
                                  "memory": max(1, self.inner.estimate_bytes(resolved))},
            "max_ongoing_requests": 4 * config.batch_threads,
        }
        if config.max_replicas is None:
            options["num_replicas"] = config.replicas
        else:
            options["autoscaling_config"] = {"min_replicas": lowest, "max_replicas": highest,
                                             "target_ongoing_requests": config.batch_threads}
        batching = {"max_batch": config.max_batch_size,
                    "max_delay_s": config.max_queue_delay_ms / 1000,
                    "max_queue": config.max_queue, "threads": config.batch_threads}
        app = self.app_name(resolved)
        shipped = dataclasses.replace(resolved, path=None)  # replicas load from the store
        deployment: Any = serve.deployment(ModelReplica)
        deployment = deployment.options(**options)
        try:
            handle = serve.run(deployment.bind(self.kind, shipped, self.cluster.store.url, key,
                                               batching, config.runtime_for(resolved.name)),
                               name=app, route_prefix=None)
            info = handle.describe.remote().result()
        except Exception as e:
            serve.delete(app, _blocking=False)
            raise ServerError(f"{resolved.describe()}: its replicas did not start: {e}") from e
        replicas = Replicas(app, resolved.describe())
        replicas.record(info["load"])
        self.board.add(replicas)

        def run(inputs: list[Any]) -> Any:
            try:
                outputs, load = handle.remote(inputs).result()
            except RayTaskError as e:  # the replica raised: its error, as if raised here
                raise (e.cause if isinstance(e.cause, Exception) else e) from None
            except (RayError, RayServeException) as e:  # a replica (or its node) went away
                raise ModelUnloadedError(
                    f"{resolved.describe()}: its replica was lost ({first_line(e, 200)}); retry: "
                    "the cluster starts another") from None
            replicas.record(load)
            return outputs

        size = tuple(info["size"]) if info["size"] else None
        log_event("replicas_deployed", model=resolved.describe(), kind=self.kind, app=app,
                  replicas=config.replicas if config.max_replicas is None else [lowest, highest])
        return Built(replicas, run, int(info["memory"]), size=size,
                     labels=list(info["labels"]), dim=int(info["dim"]),
                     prepare=_as_pixels if size else None,
                     batch_threads=IN_FLIGHT * config.batch_threads * highest,
                     runtime=info["runtime"], replicas=replicas.loads)

    def shared_encoder(self, resolved: Resolved) -> str | None:
        return None  # encoders live in the replicas, not in this process

    def release(self, resolved: Resolved, still_used: Iterable[str | None]) -> None:
        from ray import serve

        app = self.app_name(resolved)
        self.board.remove(app)
        serve.delete(app, _blocking=False)


def _as_pixels(image: np.ndarray) -> np.ndarray:
    """The front door's half of `prepare`: decoded pixels travel as they are (uint8); the
    replica scales them."""
    return image


def ray_loaders(loaders: dict[str, Loader], cluster: RayCluster, config: ServerConfig,
                board: ReplicaBoard) -> dict[str, Loader]:
    return {kind: RayLoader(loader, cluster, config, board) for kind, loader in loaders.items()}


class ReplicaCollector:
    """/metrics: replicas per model and each replica's counters."""

    def __init__(self, board: ReplicaBoard):
        self.board = board

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        count = GaugeMetricFamily("zoo_model_replicas", "Replicas serving a model (Ray)",
                                  labels=["model"])
        families: dict[str, Any] = {
            "requests": CounterMetricFamily("zoo_replica_requests", "Calls a replica answered",
                                            labels=["model", "replica", "node"]),
            "inputs": CounterMetricFamily("zoo_replica_inputs", "Inputs a replica answered",
                                          labels=["model", "replica", "node"]),
            "queued": GaugeMetricFamily("zoo_replica_queue_depth", "Inputs waiting in a "
                                        "replica's batcher", labels=["model", "replica", "node"]),
            "in_flight": GaugeMetricFamily("zoo_replica_in_flight", "Calls a replica is "
                                           "serving", labels=["model", "replica", "node"]),
        }
        for replicas in self.board.all():
            try:
                loads = replicas.loads()
            except Exception:  # the cluster is unreachable: report nothing rather than fail
                continue
            count.add_metric([replicas.model], len(loads))
            for load in loads:
                labels = [replicas.model, load.replica, load.node[:12]]
                for name, family in families.items():
                    family.add_metric(labels, getattr(load, name))
        yield count
        yield from families.values()
