"""Fine-tune jobs: a queue in SQLite, worker processes, events, crash recovery.

    ZOO_HOME/jobs/<id>/job.json     what the worker runs (base, data, hyper-parameters)
    ZOO_HOME/jobs/<id>/out/         the model being trained, with out/checkpoints/
    ZOO_HOME/jobs/<id>/worker.log   the worker's stderr, every attempt appended

At most `max_jobs` workers run at once (`zoo_server.job_runner`, one process each, started
from the scheduler thread); the rest stay QUEUED, oldest first. A worker's events (JSON
lines on its stdout) are stored as JobEvents and wake WatchJob streams. When a worker
finishes, its model directory is moved into the model store as the next version of the
job's output name, so the very next Classify can use it.

Workers get a clean environment (`worker_environment`): an allowlist of what Python,
TensorFlow, Zoo and the HTTP stack read (paths, locale, `ZOO_*`, `HF_*`, `TF_*`, proxies and
CA bundles), never the server's bearer token (`ZOO_TOKEN`) or its `ZOO_SERVE_*` settings, and
the Hugging Face token (`HF_TOKEN`) only for a job whose base model is downloaded from the
Hub; a job on a Keras image model never needs it. Anything else the server was started with
(cloud credentials, database passwords) stays with the server.

Messages a client reads (job errors, events) name files relative to the server's home,
never by their absolute path (`zoo_server.paths`).

Restarts: jobs found RUNNING when the server starts (it crashed or was killed) go back
to QUEUED and resume from their last checkpoint (`resume=True`), `attempts` counting each
start. On a graceful shutdown running workers are asked to stop after a checkpoint and
their jobs are requeued the same way. CancelJob stops a worker the same way but the job
ends CANCELLED.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zoo
from zoo import config as zoo_config
from zoo import model_dir
from zoo.errors import InvalidInputError, ModelNotFoundError, ZooError
from zoo.finetuning.events import describe, epoch_metrics
from zoo.finetuning.hyperparameters import HyperParameters, field_names
from zoo.finetuning.trainer import checkpoint_epoch
from zoo.hub.registry import get_spec
from zoo_server.config import ServerConfig
from zoo_server.datasets import IMAGE_FORMATS, DatasetStore
from zoo_server.db import Database, now_ms
from zoo_server.errors import JobStateError, NotFoundError, ShuttingDownError, quote
from zoo_server.logs import log_event
from zoo_server.names import JOB_ID, check_lookup_name, check_output_name, new_job_id
from zoo_server.paths import PathScrubber
from zoo_server.store import FINETUNED, ModelStore

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
STOPPED_EXIT = 3

# What a worker process inherits from the server's environment: exact names, and prefixes.
WORKER_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "LD_LIBRARY_PATH", "XDG_CACHE_HOME", "PYTHONPATH", "PYTHONHASHSEED",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
})
WORKER_ENV_PREFIXES = ("LC_", "ZOO_", "HF_", "TF_", "KERAS_", "CUDA_", "NVIDIA_", "XLA_",
                       "OMP_", "MKL_", "OPENBLAS_", "TORCH_")
# Never to a worker, whatever the allowlist says; Hub tokens only when the job needs the Hub.
WORKER_ENV_SECRETS = ("ZOO_TOKEN",)
WORKER_ENV_SERVER_ONLY = "ZOO_SERVE_"
HUB_TOKENS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def worker_environment(environ: dict[str, str] | os._Environ[str], *, needs_hub: bool
                       ) -> dict[str, str]:
    """The environment of a job's worker: the allowlisted part of `environ`, without the
    server's token and settings, and with the Hub token only when `needs_hub`."""
    env = {}
    for name, value in environ.items():
        if name in WORKER_ENV_SECRETS or name.startswith(WORKER_ENV_SERVER_ONLY):
            continue
        if name in HUB_TOKENS and not needs_hub:
            continue
        if name in WORKER_ENV or name.startswith(WORKER_ENV_PREFIXES) or name in HUB_TOKENS:
            env[name] = value
    return env


def needs_hub(base: str) -> bool:
    """Whether a job on `base` may download from the Hugging Face Hub (its weights live
    there), and so needs the Hub token if the server has one."""
    from zoo.hub.manifest import load_manifest

    try:
        return load_manifest().model(base).source == "huggingface"
    except ZooError:
        return False


def state_filter(state: int, names: dict[int, str]) -> str | None:
    """ListJobs' `state` field as a job state name: None for 0 (all), INVALID_ARGUMENT for a
    number the API does not define (proto3 enums accept any int32 on the wire).
    `names` maps the enum's numbers to names (`finetune_pb2.JobState.items()` reversed)."""
    if state == 0:
        return None
    name = names.get(state)
    if name not in STATES:
        raise InvalidInputError(
            f"state {state} is not a job state; use one of "
            f"{', '.join(f'{n} ({v})' for v, n in sorted(names.items()) if n in STATES)} "
            "or 0 for all")
    return name


# The proto's HyperParameters fields are the library's schema's (tests/test_proto.py).
HYPERPARAMETERS = tuple(field_names())


def check_hyperparameters(hp: dict[str, Any], image: bool, base: str = "the base") -> None:
    """The library's own checks (names, types, ranges, image-only settings), at request time,
    so a bad job is refused before it is queued."""
    HyperParameters.from_kwargs(**hp).check_task(image, base)


def planned_epochs(hp: dict[str, Any]) -> int:
    parsed = HyperParameters.from_kwargs(**hp)
    return parsed.epochs * 2 if parsed.phase2 else parsed.epochs


def code_roots() -> list[str]:
    """The folders zoo_server and zoo are imported from, for a worker's PYTHONPATH."""
    return [str(Path(__file__).resolve().parent.parent),
            str(Path(zoo.__file__).resolve().parent.parent)]


class Launcher:
    """Where a job's attempts run: here, a local worker process (zoo_server.job_runner);
    zoo_server.scale.jobs runs them on a Ray cluster. `start` returns what the JobManager
    watches: a `subprocess.Popen`, or an object with the same `stdout` (the worker's JSON
    event lines), `wait`, `send_signal`, `kill` and `pid`."""

    def checkpoint(self, job_id: str, out: Path) -> int | None:
        """The epoch the job would resume after, or None: it starts afresh."""
        return checkpoint_epoch(out)

    def start(self, job: dict[str, Any], job_dir: Path, spec: dict[str, Any],
              env: dict[str, str]) -> Any:
        (job_dir / "job.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join([*code_roots(), env.get("PYTHONPATH", "")]
                                            ).rstrip(os.pathsep)
        with open(job_dir / "worker.log", "ab") as log_file:
            log_file.write(f"--- attempt {job['attempts'] + 1} at {time.ctime()}\n".encode())
            log_file.flush()
            return subprocess.Popen(
                [sys.executable, "-m", "zoo_server.job_runner", str(job_dir / "job.json"),
                 "--parent-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, env=env,
                cwd=job_dir, start_new_session=True,
            )

    def finished(self, job_id: str) -> None:
        """The job ended, whichever way: drop what it left outside ZOO_HOME/jobs."""


@dataclass(eq=False)
class _Worker:
    job_id: str
    process: subprocess.Popen[bytes]
    stopping: bool = False  # asked to stop because the server shuts down
    stop_sent: float | None = None
    error: str = ""
    result: dict[str, Any] | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


class JobManager:
    def __init__(self, home: Path, db: Database, store: ModelStore, datasets: DatasetStore,
                 config: ServerConfig, on_model: Callable[[str, int], None] | None = None,
                 launcher: Launcher | None = None):
        self.home, self.db, self.store, self.datasets = home, db, store, datasets
        self.config = config
        self.launcher = launcher or Launcher()
        self.jobs_dir = home / "jobs"
        self.on_model = on_model
        self.scrub = PathScrubber(home, zoo_config.hf_cache_dir())
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._version = 0  # bumped on every event and state change (WatchJob waits on it)
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="job-scheduler", daemon=True)

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._recover()
        self._thread.start()

    def shutdown(self) -> None:
        """Ask running workers to stop after a checkpoint; their jobs stay QUEUED and resume
        on the next start. Returns when every worker is gone."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _recover(self) -> None:
        for job in self.db.jobs(RUNNING, limit=1_000_000):
            out = self._out(job["id"])
            if job["cancel_requested"]:
                self._end(job["id"], CANCELLED, "cancelled (the server stopped while it ran)")
            elif model_dir.is_model_dir(out):  # it finished; the server died before registering
                try:
                    self._succeed(job["id"], job["output_name"], out)
                except Exception as e:
                    self._end(job["id"], FAILED, f"could not register the finished model: {e}")
            else:
                self.db.update_job(job["id"], state=QUEUED)
                self._record(job["id"], "STATE", state=QUEUED,
                             message="requeued: the server stopped while the job ran; it "
                                     "resumes from its last checkpoint")
                log_event("job_requeued", job=job["id"], attempts=job["attempts"])

    # --- the scheduler thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._schedule()
                self._kill_overdue()
            except Exception as e:  # keep scheduling whatever one job did
                log_event("scheduler_error", error=repr(e), exc_info=True)
            self._wake.wait(1.0)
            self._wake.clear()
        self._stop_all()

    def _schedule(self) -> None:
        with self._lock:
            free = self.config.max_jobs - len(self._workers)
            if free <= 0 or self._stopping:
                return
            for job in self.db.queued_jobs()[:free]:
                self._spawn(job)

    def _kill_overdue(self) -> None:
        with self._lock:
            for worker in self._workers.values():
                if worker.stop_sent and time.monotonic() - worker.stop_sent > self.config.job_stop_s:
                    log_event("job_killed", job=worker.job_id, reason="did not stop in time")
                    worker.process.kill()

    def _stop_all(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
            for worker in workers:
                worker.stopping = True
                _signal(worker.process, signal.SIGTERM)
        deadline = time.monotonic() + self.config.job_stop_s
        for worker in workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        for worker in workers:
            if worker.reader is not None:
                worker.reader.join(timeout=10)

    def _out(self, job_id: str) -> Path:
        return self.jobs_dir / job_id / "out"

    def _spawn(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        job_dir = self.jobs_dir / job_id
        out = job_dir / "out"
        dataset = self.db.dataset(job["dataset_id"])
        if dataset is None or not self.datasets.path(dataset).exists():
            self._end(job_id, FAILED, f"dataset {job['dataset_id']} no longer exists (it was "
                                      "deleted); upload it again and create a new job")
            return
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "cancel").unlink(missing_ok=True)
        checkpoint = self.launcher.checkpoint(job_id, out)
        resume = checkpoint is not None
        resumed_epoch = checkpoint or 0
        spec = {"base": job["base"], "data": str(self.datasets.path(dataset)), "out": str(out),
                "name": job["output_name"], "hyperparameters": job["hyperparameters"],
                "resume": resume}
        env = worker_environment(os.environ, needs_hub=needs_hub(job["base"]))
        env["ZOO_HOME"] = str(self.home)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            process = self.launcher.start(job, job_dir, spec, env)
        except Exception as e:
            self._end(job_id, FAILED, f"could not start the job: {e}")
            return
        worker = _Worker(job_id, process)
        self._workers[job_id] = worker
        attempts = job["attempts"] + 1
        self.db.update_job(job_id, state=RUNNING, attempts=attempts,
                           started_ms=job["started_ms"] or now_ms(), error="")
        message = f"running (attempt {attempts})"
        if resume:
            message += f"; resuming from the checkpoint after epoch {resumed_epoch}"
        self._record(job_id, "STATE", state=RUNNING, epoch=resumed_epoch, message=message)
        log_event("job_started", job=job_id, attempts=attempts, resume=resume, pid=process.pid)
        worker.reader = threading.Thread(target=self._read, args=(worker,),
                                         name=f"job-reader:{job_id}", daemon=True)
        worker.reader.start()

    # --- a worker's events ---------------------------------------------------------------------

    def _read(self, worker: _Worker) -> None:
        assert worker.process.stdout is not None
        for raw in worker.process.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                try:
                    self._on_event(worker, event)
                except Exception as e:
                    log_event("job_event_error", job=worker.job_id, error=repr(e))
        code = worker.process.wait()
        try:
            self._on_exit(worker, code)
        except Exception as e:
            log_event("job_exit_error", job=worker.job_id, error=repr(e), exc_info=True)
            self._end(worker.job_id, FAILED, f"internal error finishing the job: {e}")
        finally:
            with self._lock:
                self._workers.pop(worker.job_id, None)
            self._wake.set()

    def _on_event(self, worker: _Worker, event: dict[str, Any]) -> None:
        """A worker's event (the library's dict) stored as a JobEvent; its message is the line
        `zoo finetune` prints for it (zoo.finetuning.events), so every client words it alike."""
        job_id = worker.job_id
        kind = event.get("event")
        message = describe(event) or ""
        if kind in ("epoch", "head"):  # "head": phase 1 fitted to its optimum, all at once
            numbers = epoch_metrics(event)
            loss = numbers.pop("loss", 0.0)
            self._record(job_id, "EPOCH", phase=event.get("phase", 1), epoch=event.get("epoch", 0),
                         epochs=event.get("epochs", 0), loss=loss, metrics=numbers,
                         message=message)
            job = self.db.job(job_id)
            planned = max(int(event.get("epochs", 0)), job["epochs"] if job else 0)
            self.db.update_job(job_id, epoch=int(event.get("epoch", 0)), epochs=planned,
                               metrics={"loss": loss, **numbers})
        elif kind == "step":
            self._record(job_id, "STEP", epoch=event.get("epoch", 0), step=event.get("step", 0),
                         steps=event.get("steps", 0), loss=float(event.get("loss") or 0.0))
        elif kind == "phase":
            self._record(job_id, "PHASE", phase=int(event.get("phase", 1)), message=message)
        elif kind == "result":
            worker.result = event
        elif kind == "error":
            worker.error = str(event.get("message", ""))
        elif message:
            self._record(job_id, "LOG", message=message)

    def _on_exit(self, worker: _Worker, code: int) -> None:
        job = self.db.job(worker.job_id)
        if job is None or job["state"] in TERMINAL:
            return
        job_id = worker.job_id
        log_event("job_process_exited", job=job_id, code=code)
        if job["cancel_requested"]:
            self._end(job_id, CANCELLED, f"cancelled after epoch {job['epoch']}")
        elif code == 0 and worker.result is not None:
            self._succeed(job_id, job["output_name"], self._out(job_id))
        elif worker.stopping:
            self.db.update_job(job_id, state=QUEUED)
            self._record(job_id, "STATE", state=QUEUED,
                         message="the server is shutting down; the job resumes from its last "
                                 "checkpoint when the server starts again")
        else:
            how = (f"was killed by signal {-code}" if code < 0 else f"exited with code {code}")
            error = worker.error or (f"the training process {how}; see "
                                     f"{self.jobs_dir / job_id / 'worker.log'}")
            self._end(job_id, FAILED, error)

    # --- state changes -------------------------------------------------------------------------

    def _record(self, job_id: str, kind: str, **fields: Any) -> None:
        if isinstance(fields.get("message"), str):
            fields["message"] = self.scrub(fields["message"])
        with self._changed:
            self.db.add_event(job_id, {"kind": kind, **fields})
            self._version += 1
            self._changed.notify_all()

    def _end(self, job_id: str, state: str, message: str) -> None:
        message = self.scrub(message)
        with self._changed:
            self.db.update_job(job_id, state=state, finished_ms=now_ms(),
                               error=message if state == FAILED else "")
            self._record(job_id, "STATE", state=state, message=message)
        if state in (CANCELLED, FAILED):
            shutil.rmtree(self._out(job_id), ignore_errors=True)
            self.launcher.finished(job_id)
        log_event("job_" + state.lower(), job=job_id, message=message)
        self._wake.set()

    def _succeed(self, job_id: str, name: str, out: Path) -> None:
        meta = model_dir.read_meta(out)
        version = self.store.register(out, name)
        self.launcher.finished(job_id)
        final = {k: float(v) for k, v in (meta.get("metrics") or {}).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        with self._changed:
            job = self.db.job(job_id)
            metrics = {**(job["metrics"] if job else {}), **final}
            self.db.update_job(job_id, state=SUCCEEDED, result_version=version,
                               finished_ms=now_ms(), metrics=metrics)
            self._record(job_id, "STATE", state=SUCCEEDED, metrics=final,
                         message=f"model {name} version {version} is being served")
        log_event("job_succeeded", job=job_id, model=name, version=version)
        if self.on_model is not None:
            self.on_model(name, version)
        self._wake.set()

    # --- the RPCs' side ------------------------------------------------------------------------

    def create(self, base: str, dataset_id: str, hyperparameters: dict[str, Any],
               output_name: str) -> dict[str, Any]:
        if self._stopping:
            raise ShuttingDownError("the server is shutting down; create the job again later")
        if self.config.max_jobs == 0:
            raise JobStateError("this server runs no fine-tune jobs (--max-jobs 0)")
        check_output_name(output_name)
        try:
            get_spec(output_name)
        except ModelNotFoundError:
            pass
        else:
            raise InvalidInputError(f"output_name {quote(output_name)} is a registry model's name; "
                                    "choose another name for the fine-tuned model")
        base = check_lookup_name(base, "base model name")
        resolved = self.store.resolve(base)
        if resolved.origin == FINETUNED or resolved.spec is None:
            raise InvalidInputError(f"{base} is a fine-tuned model; fine-tune from a registry "
                                    "model (zoo list)")
        spec = resolved.spec
        dataset = self.datasets.get(dataset_id)
        image_data = dataset["format"] in IMAGE_FORMATS
        if spec.is_image != image_data:
            raise InvalidInputError(
                f"{spec.name} is a {spec.task} model and dataset {dataset_id} holds "
                f"{'images' if image_data else 'text'}; use a matching base or dataset")
        check_hyperparameters(hyperparameters, spec.is_image, spec.name)
        job_id = new_job_id()
        job = {"id": job_id, "state": QUEUED, "base": spec.name, "dataset_id": dataset_id,
               "output_name": output_name, "hyperparameters": hyperparameters,
               "epochs": planned_epochs(hyperparameters), "created_ms": now_ms()}
        with self._changed:
            self.db.add_job(job)
            ahead = len(self.db.queued_jobs()) - 1 + len(self._workers)
            self._record(job_id, "STATE", state=QUEUED,
                         message=f"queued ({ahead} job(s) ahead)" if ahead else "queued")
        log_event("job_created", job=job_id, base=spec.name, dataset=dataset_id,
                  output=output_name)
        self._wake.set()
        return self.get(job_id)

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.db.job(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise NotFoundError(f"no job {quote(job_id)}")
        return job

    def list(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        return self.db.jobs(state, limit)

    def cancel(self, job_id: str, wait_s: float = 10.0) -> dict[str, Any]:
        with self._changed:
            job = self.get(job_id)
            if job["state"] in TERMINAL:
                raise JobStateError(f"job {job_id} already {job['state'].lower()}; only queued "
                                    "or running jobs can be cancelled")
            self.db.update_job(job_id, cancel_requested=1)
            worker = self._workers.get(job_id)
            if worker is None:
                self._end(job_id, CANCELLED, "cancelled before it started")
                return self.get(job_id)
            (self.jobs_dir / job_id / "cancel").touch()
            _signal(worker.process, signal.SIGTERM)
            worker.stop_sent = time.monotonic()
            self._record(job_id, "LOG", message="cancel requested; stopping after a checkpoint")
            deadline = time.monotonic() + wait_s
            while self.db.job(job_id)["state"] not in TERMINAL:  # type: ignore[index]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        return self.get(job_id)

    def watch(self, job_id: str, is_active: Callable[[], bool], after: int = 0,
              idle_s: float | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """The job's events after seq `after` (0: from the start) as (seq, event), then live
        ones until it ends, or until `idle_s` seconds pass without one.

        A watcher waits for the job, not for its client, so silence is no fault of the
        client's; but each open watch holds an RPC thread, so a quiet job's watch ends after
        `idle_s` and the client watches again from the last seq it got (zoo_client does):
        a vanished watcher then costs at most one idle period."""
        self.get(job_id)
        quiet_since = time.monotonic()
        while True:
            version = self._version
            for seq, event in self.db.events(job_id, after):
                after = seq
                quiet_since = time.monotonic()
                yield seq, event
            job = self.get(job_id)
            if job["state"] in TERMINAL:
                yield from self.db.events(job_id, after)
                return
            wait = 1.0
            if idle_s is not None:
                wait = min(wait, idle_s - (time.monotonic() - quiet_since))
                if wait <= 0:
                    return
            with self._changed:
                if self._version == version and not self._stopping:
                    self._changed.wait(timeout=wait)
            if self._stopping or not is_active():
                return

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED), 0)
        counts.update(self.db.job_counts())
        return {k.lower(): v for k, v in counts.items()}


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        process.send_signal(signum)
    except (ProcessLookupError, OSError):
        pass
