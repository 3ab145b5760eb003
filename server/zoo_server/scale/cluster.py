"""The server's connection to Ray: `--ray auto` (a local head node of its own) or
`--ray HOST:PORT` (a running cluster), Ray Serve started without proxies, the model store.

Serve's HTTP and gRPC proxies stay off: the `zoo serve` process is the front door (both
APIs, the token, TLS, limits, decoding, deadlines) and reaches each model's replicas
through a DeploymentHandle, which routes every call to the less loaded of two replicas
(Serve's power-of-two-choices router). A proxy would be a second front door without any of
that, and one more hop: measured on 2 cores, a handle call costs about 6 ms.

Every Serve application this server deploys is named `zoo-<hash of its home>-...`, so two
servers can share a cluster, and a restarted server replaces what its crashed self left.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from zoo_server.config import ServerConfig
from zoo_server.errors import ServerError
from zoo_server.logs import log_event
from zoo_server.scale.install import require_ray
from zoo_server.scale.nodes import RayNode, start_node
from zoo_server.scale.shared import SharedStore

AUTO = "auto"
NAMESPACE = "zoo"


def node_environment(home: Path) -> dict[str, str]:
    """What a local head node (and so every replica and job on it) inherits: the job
    workers' allowlist (never ZOO_TOKEN or ZOO_SERVE_*), this server's ZOO_HOME and the
    code of this checkout."""
    from zoo_server.jobs import code_roots, worker_environment

    env = worker_environment(os.environ, needs_hub=True)
    env["ZOO_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([*code_roots(), env.get("PYTHONPATH", "")]
                                        ).rstrip(os.pathsep)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


class RayCluster:
    def __init__(self, config: ServerConfig, home: Path):
        require_ray()
        import ray
        from ray import serve

        self.config, self.home = config, home
        self.prefix = "zoo-" + hashlib.sha256(str(home).encode()).hexdigest()[:8]
        self.node: RayNode | None = None
        self._temp: str | None = None
        address = (config.ray or AUTO).strip()
        if address == AUTO:
            self._temp = tempfile.mkdtemp(prefix="zoo-ray-")  # short: socket paths <= 107 B
            self.node = start_node(head=True, num_cpus=os.cpu_count() or 1,
                                   env=node_environment(home), temp_dir=Path(self._temp),
                                   log=home / "ray" / "head.log", die_with_parent=True)
            address = self.node.address
        store = config.model_store or (str(home / "shared") if self.node else None)
        if store is None:
            self.close()
            raise ServerError("--ray with a cluster address needs --model-store: a folder "
                              "every node mounts, or an fsspec URL such as s3://bucket/zoo")
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING,
                     log_to_driver=False, configure_logging=False)
            _restore(handlers)  # Ray's own would abort the server on SIGTERM, mid-shutdown
            serve.start(proxy_location="Disabled",
                        logging_config={"enable_access_log": False, "log_level": "WARNING"})
        except Exception as e:
            self.close()
            raise ServerError(f"cannot reach the Ray cluster at {address}: {e}") from None
        self.address = address
        self.store = SharedStore(store)
        self.delete_apps()  # what a crashed server with this home left behind
        resources = ray.cluster_resources()
        log_event("ray_connected", address=address, local=self.node is not None,
                  nodes=len([n for n in ray.nodes() if n.get("Alive")]),
                  cpus=resources.get("CPU", 0), model_store=store, session=self._temp)

    def app_name(self, *parts: Any) -> str:
        return "-".join([self.prefix, *(str(p) for p in parts)])

    def apps(self) -> list[str]:
        from ray import serve

        return [name for name in serve.status().applications if name.startswith(self.prefix)]

    def delete_apps(self) -> None:
        from ray import serve

        for name in self.apps():
            serve.delete(name, _blocking=False)

    def close(self) -> None:
        """Take this server's deployments down and leave the cluster (a local head stops)."""
        import ray

        if ray.is_initialized():
            try:
                self.delete_apps()
            except Exception as e:  # the cluster may be gone already
                log_event("ray_cleanup_failed", error=repr(e))
            ray.shutdown()
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None


def _restore(handlers: dict[signal.Signals, Any]) -> None:
    """Put back the server's signal handlers (graceful shutdown) after ray.init replaced
    them; only the main thread may, and only Python handlers are put back."""
    for sig, handler in handlers.items():
        if callable(handler) or handler in (signal.SIG_DFL, signal.SIG_IGN):
            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread: the caller handles signals itself
                return


def match_tensorflow_threads() -> int:
    """In a Ray actor: size TensorFlow's intra-op pool to the CPUs Ray reserved for it (at
    least 1), before TensorFlow runs anything. Otherwise every replica, job and feature
    shard on a node would each take all its cores, and two of them would fight over them;
    with `--replica-cpus 4` a replica uses 4 threads. Returns the threads set (0: too late)."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
    threads = max(1, round(cpus))
    from zoo.quiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran in this worker
        return 0
    return threads
