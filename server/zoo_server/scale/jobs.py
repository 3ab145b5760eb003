"""Fine-tune jobs on the cluster: each attempt a Ray actor, placed by Ray on any node with room.

The JobManager stays where it is (the queue in SQLite, `--max-jobs`, now counted across
the cluster, events, cancelling, registering results); only where an attempt runs changes:
`RayLauncher` is its launcher. Each attempt is a `JobActor` that reserves `--job-cpus`,
`--job-memory-mb` and any `--job-resources`, and on its node:

- says where it runs (a `node` event, which the job's events show),
- copies the dataset from the model store (once per node) and, when resuming, the job's last
  checkpoint,
- runs `zoo.finetune` in one of its threads and keeps its events, in order, for `events`
  (a long poll from the server),
- copies every checkpoint to the model store as soon as it is written, and the finished
  model folder when done.

`RayJobProcess` is the server's side of one job, shaped like the `subprocess.Popen` the
JobManager watches for a local worker: `stdout` yields the actor's events as the same JSON
lines job_runner prints, `send_signal(SIGTERM)` asks the actor to stop after a checkpoint,
`kill` ends it. When the actor dies with its node, it starts another on a node that is
alive, resuming from the last checkpoint in the store (`--job-retries` times), and says so
in a `node_lost` event; the JobManager sees one job that went on.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo.finetuning.trainer import STATE_FILE, checkpoint_epoch
from zoo_server.config import ServerConfig
from zoo_server.errors import ServerError, first_line
from zoo_server.jobs import HUB_TOKENS, STOPPED_EXIT, Launcher
from zoo_server.logs import log_event
from zoo_server.scale.cluster import RayCluster
from zoo_server.scale.shared import SharedStore

MIB = 1024 * 1024
KILLED = -signal.SIGKILL
SNAPSHOT_EVERY_S = 0.5
# Datasets copied from the model store, per node (dataset ids are content hashes).
DATA_ROOT = Path(tempfile.gettempdir()) / "zoo-ray-data"


def parse_resources(entries: tuple[str, ...]) -> dict[str, float]:
    """`--job-resources trainer=1 gpu_node=0.5` as Ray's custom resources."""
    resources: dict[str, float] = {}
    for entry in entries:
        name, sep, amount = entry.partition("=")
        try:
            value = float(amount) if sep else 1.0
        except ValueError:
            value = -1.0
        if not name.strip() or value <= 0:
            raise ServerError(f"--job-resources {entry!r} is not NAME=AMOUNT (a positive "
                              "number), e.g. trainer=1")
        resources[name.strip()] = value
    return resources


def _store_keys(job_id: str) -> tuple[str, str]:
    return f"jobs/{job_id}/checkpoints", f"jobs/{job_id}/out"


class JobActor:
    """One attempt of one job, on whichever node Ray placed it (a threaded actor: `run`
    trains in one thread while `events` and `stop` answer in others)."""

    def __init__(self, job_id: str, spec: dict[str, Any], store_url: str,
                 extract_features: Any = None):
        self.job_id, self.spec = job_id, spec
        self.store = SharedStore(store_url)
        self.extract_features = extract_features
        self._events: list[str] = []
        self._cond = threading.Condition()
        self._stop = False
        self._done = False

    def emit(self, event: dict[str, Any]) -> None:
        with self._cond:
            self._events.append(json.dumps(event, default=str))
            self._cond.notify_all()

    def events(self, after: int, wait_s: float) -> list[str]:
        """The events after the first `after`, waiting up to `wait_s` for one."""
        with self._cond:
            if len(self._events) <= after and not self._done:
                self._cond.wait(wait_s)
            return self._events[after:]

    def stop(self) -> None:
        self._stop = True

    def run(self) -> int:
        try:
            return self._run()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _run(self) -> int:
        import os

        import ray

        from zoo import config as zoo_config

        try:
            os.nice(5)  # training yields the CPU to replicas sharing the node
        except OSError:
            pass
        spec, home = self.spec, zoo_config.zoo_home()
        checkpoints_key, out_key = _store_keys(self.job_id)
        work = home / "ray-jobs" / self.job_id
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)  # an earlier attempt on this node
        try:
            # The same path on every node: a resumed run checks it is on the same data.
            data = self.store.get_dir(spec["dataset"], DATA_ROOT / spec["dataset"])
            resumed = spec.get("resume") and self.store.get_snapshot(
                checkpoints_key, out / "checkpoints", STATE_FILE)
        except Exception as e:
            self.emit({"event": "error", "message": f"could not copy the job's files from the "
                                                    f"model store: {e}"})
            return 1
        from zoo_server.scale.cluster import match_tensorflow_threads

        match_tensorflow_threads()
        self.emit({"event": "node", "node": ray.get_runtime_context().get_node_id(),
                   "address": ray.util.get_node_ip_address(),
                   "resumed_from_epoch": checkpoint_epoch(out) if resumed else None})
        syncing = threading.Event()
        sync = threading.Thread(target=self._sync, args=(out / "checkpoints", syncing),
                                name="checkpoint-sync", daemon=True)
        sync.start()
        import zoo
        from zoo.hub.registry import get_spec

        image = get_spec(spec["base"]).is_image  # sharded features are phase 1's of images
        try:
            result = zoo.finetune(
                spec["base"], data / spec["data"], out, resume=bool(resumed), name=spec["name"],
                record=False, on_event=self.emit, should_stop=lambda: self._stop,
                extract_features=self.extract_features if image else None,
                **spec.get("hyperparameters", {}))
        except InterruptedError:
            return STOPPED_EXIT
        except zoo.ZooError as e:
            self.emit({"event": "error", "message": str(e), "type": type(e).__name__})
            return 1
        except Exception as e:
            traceback.print_exc()
            self.emit({"event": "error", "message": f"{type(e).__name__}: {e}",
                       "type": type(e).__name__})
            return 1
        finally:
            syncing.set()
            sync.join()
            if self.extract_features is not None and image:
                self.extract_features.close()
        self.store.put_dir(result.output_dir, out_key, skip=("checkpoints",))
        self.emit({"event": "result", "output_dir": out_key,
                   "metrics": {k: v for k, v in result.metrics.items()
                               if isinstance(v, (int, float))},
                   "epochs_run": result.epochs_run})
        return 0

    def _sync(self, checkpoints: Path, done: threading.Event) -> None:
        """Copy each new checkpoint to the store (and the last one once training ends)."""
        key = _store_keys(self.job_id)[0]
        last = None
        while True:
            finished = done.wait(SNAPSHOT_EVERY_S)
            try:
                stamp = (checkpoints / STATE_FILE).stat().st_mtime_ns
            except OSError:
                stamp = None
            if stamp is not None and stamp != last:
                try:
                    if self.store.put_snapshot(checkpoints, key, STATE_FILE):
                        last = stamp
                except OSError as e:
                    print(f"checkpoint copy failed: {e}", flush=True)
            if finished:
                return


class RayLauncher(Launcher):
    """Runs the JobManager's jobs as JobActors on the cluster."""

    def __init__(self, cluster: RayCluster, config: ServerConfig, home: Path,
                 extract_features: Any = None):
        self.cluster, self.config, self.home = cluster, config, home
        self.store = cluster.store
        self.resources = parse_resources(config.job_resources)
        self.extract_features = extract_features

    def checkpoint(self, job_id: str, out: Path) -> int | None:
        text = self.store.read_text(f"{_store_keys(job_id)[0]}/{STATE_FILE}")
        try:
            return int(json.loads(text)["epoch"]) if text else None
        except (ValueError, KeyError, TypeError):
            return None

    def start(self, job: dict[str, Any], job_dir: Path, spec: dict[str, Any],
              env: dict[str, str]) -> RayJobProcess:
        data = Path(spec["data"]).relative_to(self.home)  # datasets/<id>/...
        dataset = "/".join(data.parts[:2])
        if not self.store.has(dataset):
            self.store.put_dir(self.home / dataset, dataset)
        spec = {**spec, "dataset": dataset, "data": Path(*data.parts[2:]).as_posix()}
        (job_dir / "job.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
        with open(job_dir / "worker.log", "a", encoding="utf-8") as log:
            log.write(f"--- attempt {job['attempts'] + 1} at {time.ctime()} on the Ray cluster "
                      f"{self.cluster.address} (its logs are in Ray's session folder)\n")
        hub = {k: v for k, v in env.items() if k in HUB_TOKENS}  # only jobs that need it
        return RayJobProcess(self, job["id"], spec, hub, Path(spec["out"]))

    def spawn(self, job_id: str, spec: dict[str, Any], env_vars: dict[str, str]) -> Any:
        import ray

        options: dict[str, Any] = {"num_cpus": self.config.job_cpus, "max_restarts": 0,
                                   "max_concurrency": 4, "resources": self.resources}
        if self.config.job_memory_mb:
            options["memory"] = self.config.job_memory_mb * MIB
        if env_vars:
            options["runtime_env"] = {"env_vars": env_vars}
        actor = ray.remote(JobActor).options(**options).remote(
            job_id, spec, self.store.url, self.extract_features)
        return actor

    def fetch_result(self, job_id: str, out: Path) -> None:
        shutil.rmtree(out, ignore_errors=True)
        self.store.get_dir(_store_keys(job_id)[1], out)

    def finished(self, job_id: str) -> None:
        try:
            self.store.remove(f"jobs/{job_id}")
        except OSError as e:
            log_event("model_store_cleanup_failed", job=job_id, error=repr(e))


class RayJobProcess:
    """One job on the cluster, as the JobManager watches a local worker process."""

    pid = 0  # no local process

    def __init__(self, launcher: RayLauncher, job_id: str, spec: dict[str, Any],
                 env_vars: dict[str, str], out: Path):
        self.launcher, self.job_id, self.spec, self.env_vars = launcher, job_id, spec, env_vars
        self.out = out
        self.returncode: int | None = None
        self._done = threading.Event()
        self._stop_asked = self._killed = False
        self._actor = launcher.spawn(job_id, spec, env_vars)
        self._run = self._actor.run.remote()
        self.stdout = self._lines()

    def _lines(self) -> Iterator[bytes]:
        import ray
        from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

        seen, retries = 0, 0
        try:
            while True:
                try:
                    lines = ray.get(self._actor.events.remote(seen, 1.0), timeout=60)
                    seen += len(lines)
                    for line in lines:
                        yield line.encode() + b"\n"
                    if lines or not ray.wait([self._run], timeout=0)[0]:
                        continue
                    code = int(ray.get(self._run))
                    for line in ray.get(self._actor.events.remote(seen, 0.0)):
                        yield line.encode() + b"\n"
                    if code == 0:
                        self.launcher.fetch_result(self.job_id, self.out)
                    self.returncode = code
                    return
                except (ActorUnavailableError, GetTimeoutError):
                    continue  # the node may come back; if it does not, Ray says it died
                except RayActorError as e:  # the actor died: its node, or kill()
                    if self._killed or self._stop_asked:
                        self.returncode = KILLED if self._killed else STOPPED_EXIT
                        return
                    if retries >= self.launcher.config.job_retries:
                        yield self._event({"event": "error", "message": (
                            f"the job's node died {retries + 1} times; last: {first_line(e, 300)}")})
                        self.returncode = 1
                        return
                    retries += 1
                    epoch = self.launcher.checkpoint(self.job_id, self.out)
                    self.spec = {**self.spec, "resume": epoch is not None}
                    yield self._event({"event": "node_lost", "error": first_line(e, 300),
                                       "resume_epoch": epoch or 0, "retry": retries})
                    log_event("job_node_lost", job=self.job_id, error=first_line(e, 300), epoch=epoch)
                    self._actor = self.launcher.spawn(self.job_id, self.spec, self.env_vars)
                    self._run = self._actor.run.remote()
                    seen = 0
        finally:
            self._done.set()

    @staticmethod
    def _event(event: dict[str, Any]) -> bytes:
        return json.dumps(event).encode() + b"\n"

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"ray job {self.job_id}", timeout or 0)
        return KILLED if self.returncode is None else self.returncode

    def poll(self) -> int | None:
        return self.returncode if self._done.is_set() else None

    def send_signal(self, signum: int) -> None:
        """SIGTERM (cancel, server shutdown): stop after a checkpoint, as a local worker does."""
        self._stop_asked = True
        try:
            self._actor.stop.remote()
        except Exception as e:
            log_event("job_stop_failed", job=self.job_id, error=repr(e))

    def kill(self) -> None:
        import ray

        self._killed = True
        try:
            ray.kill(self._actor, no_restart=True)
        except Exception as e:
            log_event("job_kill_failed", job=self.job_id, error=repr(e))
