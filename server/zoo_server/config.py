"""The server's settings: one frozen dataclass, filled from flags, then the environment,
then these defaults.

Each field is declared once, with its help line and group: `zoo serve`'s flags
(zoo_server.cli), the environment variables and the README's table all derive from it.
Every setting has an environment variable, `ZOO_SERVE_<NAME>` (e.g.
`ZOO_SERVE_MAX_BATCH_SIZE=64`), except the bearer token, which is `ZOO_TOKEN`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError
from zoo.vision import DEFAULT_MAX_PIXELS, MAX_DECODE_BYTES_PER_PIXEL
from zoo.vision.runtimes import CHOICES as RUNTIME_CHOICES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
MIB = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

INFERENCE, LIMITS, JOBS = "inference", "limits", "fine-tune jobs"
RAY = "scaling out on Ray (zoo[ray])"
OPERATIONS = "security and operations"


def _setting(default: Any, help: str, group: str, *, flag: str | None = None,
             env: str | None = None, choices: tuple[str, ...] | None = None,
             secret: bool = False, past: str | None = None) -> Any:
    """A setting: its default, its help line, its flag group, where a flag or an environment
    variable is not named after the field, whether it stays out of logs and repr, and, for a
    limit, what a request past it gets (`past`: the README's table of limits lists those)."""
    return field(default=default, repr=not secret,
                 metadata={"help": help, "group": group, "flag": flag, "env": env,
                           "choices": choices, "secret": secret, "past": past})


@dataclass(frozen=True)
class ServerConfig:
    # Inference: dynamic batching per loaded model.
    max_batch_size: int = _setting(32, "inputs per compiled call: concurrent requests for one "
                                       "model are batched", INFERENCE)
    max_queue_delay_ms: float = _setting(5.0, "how long a batch may wait for requests known to "
                                              "be on their way", INFERENCE)
    max_queue: int = _setting(512, "inputs waiting per model", INFERENCE, past="RESOURCE_EXHAUSTED (OIP HTTP: 429)")
    batch_threads: int = _setting(2, "batches of one model running at once (a second fills the "
                                     "cores the first leaves idle)", INFERENCE)
    memory_budget_mb: int = _setting(4096, "loaded models' weights; idle models are evicted "
                                           "least recently used first", INFERENCE,
                                     past="RESOURCE_EXHAUSTED when models in use fill it")
    load_wait_s: float = _setting(120.0, "seconds a request waits for its model to load",
                                  INFERENCE, flag="--load-wait",
                                  past="UNAVAILABLE (OIP HTTP: 503)")
    decode_threads: int = _setting(0, "image decoding pool; 0: one per CPU core", INFERENCE)
    intra_op_threads: int = _setting(0, "TensorFlow's intra-op threads; 0: TensorFlow's "
                                        "default", INFERENCE)
    inter_op_threads: int = _setting(0, "TensorFlow's inter-op threads; 0: TensorFlow's "
                                        "default", INFERENCE)
    rpc_threads: int = _setting(64, "concurrent RPC handlers (streaming calls, limited by "
                                    "--max-streams, take one each while open)", INFERENCE)
    preload: tuple[str, ...] = _setting((), "load (and warm up) these models before serving",
                                        INFERENCE)
    runtime: str = _setting("tf", "what runs image models: tf, openvino (f32), openvino-bf16 "
                                  "(gated on accuracy) or auto (the fastest that passes its "
                                  "parity gate, measured per batch size at load)", INFERENCE,
                            choices=RUNTIME_CHOICES)
    model_runtime: tuple[str, ...] = _setting((), "NAME=RUNTIME: another runtime for one model "
                                                  "(repeatable)", INFERENCE)
    # Limits.
    max_message_mb: int = _setting(64, "gRPC message size, both ways (gRPC's own default is 4)",
                                   LIMITS, past="RESOURCE_EXHAUSTED (OIP HTTP: 413)")
    max_image_pixels: int = _setting(DEFAULT_MAX_PIXELS, "width x height, checked from the "
                                                         "image header before decoding", LIMITS,
                                     past="INVALID_ARGUMENT, before decoding")
    max_inputs: int = _setting(256, "images or texts in one request (Classify, Embed, "
                                    "ClassifyText, OIP infer)", LIMITS, past="RESOURCE_EXHAUSTED, before anything is decoded")
    decode_budget_mb: int = _setting(1024, "decoded image bytes in flight: each image's size as "
                                           "its header says while it decodes, each prepared "
                                           "input until its batch ran", LIMITS,
                                     past="RESOURCE_EXHAUSTED, before decoding")
    max_streams: int = _setting(16, "streaming calls open at once (UploadDataset, "
                                    "ClassifyStream, WatchJob, FetchModel), below "
                                    "--rpc-threads so the rest stay free", LIMITS,
                                past="RESOURCE_EXHAUSTED at once")
    stream_idle_s: float = _setting(60.0, "seconds a stream may wait for the client's next "
                                          "message (or a WatchJob for its job's next event)",
                                    LIMITS, flag="--stream-idle",
                                    past="DEADLINE_EXCEEDED (UploadDataset, ClassifyStream; "
                                         "FetchModel without progress); WatchJob ends (OK) "
                                         "and clients resume")
    max_upload_mb: int = _setting(2048, "one dataset upload", LIMITS,
                                  past="RESOURCE_EXHAUSTED, from the header")
    max_extract_mb: int = _setting(8192, "an archive's total uncompressed size", LIMITS,
                                   past="INVALID_ARGUMENT, nothing kept")
    max_extract_files: int = _setting(200_000, "members (files and folders) in one archive",
                                      LIMITS, past="INVALID_ARGUMENT, nothing kept")
    dataset_retention_days: float = _setting(0.0, "delete uploaded datasets no job has used for "
                                                  "this many days, checked at start and hourly; "
                                                  "0: keep them until DeleteDataset", LIMITS,
                                             past="the dataset is deleted")
    max_concurrent_rpcs: int = _setting(1024, "RPCs in progress", LIMITS, past="RESOURCE_EXHAUSTED")
    # Fine-tune jobs.
    max_jobs: int = _setting(1, "fine-tune jobs training at once (each in its own process); "
                                "0: none", JOBS)
    job_stop_s: float = _setting(30.0, "seconds a cancelled or stopped job may take to "
                                       "checkpoint before it is killed", JOBS,
                                 flag="--job-stop-wait")
    # Scaling out on Ray: the server stays the front door, models and jobs run on the cluster.
    ray: str | None = _setting(None, "run model replicas and fine-tune jobs on Ray (needs "
                                     "zoo[ray]): 'auto' starts a local Ray instance, HOST:PORT "
                                     "joins a running cluster", RAY)
    replicas: int = _setting(1, "replicas of each loaded model; requests are routed across "
                                "them", RAY)
    min_replicas: int | None = _setting(None, "autoscale each model from this many replicas "
                                              "(with --max-replicas; default 1)", RAY)
    max_replicas: int | None = _setting(None, "autoscale each model up to this many replicas, "
                                              "by queued requests, instead of --replicas", RAY)
    replica_cpus: float = _setting(1.0, "CPUs each model replica reserves on its node", RAY)
    model_store: str | None = _setting(None, "where datasets, job checkpoints and models go "
                                             "for every node: a shared folder or an fsspec URL "
                                             "(file://, s3://...); --ray auto: "
                                             "$ZOO_HOME/shared", RAY)
    job_cpus: float = _setting(1.0, "CPUs each fine-tune job reserves on its node", RAY)
    job_memory_mb: int = _setting(2048, "memory each fine-tune job reserves on its node", RAY)
    job_resources: tuple[str, ...] = _setting((), "custom Ray resources each job needs, "
                                                  "NAME=AMOUNT (jobs then run only on nodes "
                                                  "that have them)", RAY)
    job_retries: int = _setting(3, "times a job whose node died resumes on another node from "
                                   "its last checkpoint", RAY)
    feature_shards: int = _setting(0, "actors (on any node) that share phase 1's frozen "
                                      "forward pass, for datasets of at least "
                                      "--feature-shard-min images; 0: the job alone", RAY)
    feature_shard_min: int = _setting(2000, "images a dataset needs before its features are "
                                            "sharded", RAY)
    # Security and operations.
    token: str | None = _setting(None, "require 'authorization: Bearer TOKEN' (health stays "
                                       "open); prefer $ZOO_TOKEN, which ps does not show",
                                 OPERATIONS, env="ZOO_TOKEN", secret=True)
    insecure: bool = _setting(False, "serve on a non-loopback --host without a token (only on "
                                     "a network you trust)", OPERATIONS)
    tls_cert: Path | None = _setting(None, "PEM certificate chain (with --tls-key)", OPERATIONS)
    tls_key: Path | None = _setting(None, "PEM private key", OPERATIONS)
    http_port: int | None = _setting(None, "serve HTTP on this port: the Open Inference "
                                           "Protocol's REST API (KServe v2) and the web page "
                                           "(0: any free port)", OPERATIONS)
    metrics_port: int | None = _setting(None, "serve Prometheus /metrics on this port (0: any "
                                              "free port)", OPERATIONS)
    metrics_host: str = _setting(DEFAULT_HOST, "address for /metrics", OPERATIONS)
    grace_s: float = _setting(10.0, "seconds in-flight calls get on SIGTERM/SIGINT", OPERATIONS,
                              flag="--grace")
    log_level: str = _setting("info", "logs are JSON lines on stderr; debug logs every RPC",
                              OPERATIONS, choices=LOG_LEVELS)

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch_size >= 1, "max_batch_size must be at least 1"),
            (self.max_queue_delay_ms >= 0, "max_queue_delay_ms must be 0 or more"),
            (self.max_queue >= self.max_batch_size, "max_queue must be at least max_batch_size"),
            (self.batch_threads >= 1, "batch_threads must be at least 1"),
            (self.memory_budget_mb >= 1, "memory_budget_mb must be at least 1"),
            (self.load_wait_s > 0, "load_wait_s must be positive"),
            (self.decode_threads >= 0, "decode_threads must be 0 (one per core) or more"),
            (self.max_message_mb >= 1, "max_message_mb must be at least 1"),
            (self.max_image_pixels >= 1, "max_image_pixels must be at least 1"),
            (self.max_inputs >= 1, "max_inputs must be at least 1"),
            (self.decode_budget_bytes >= self.max_image_pixels * MAX_DECODE_BYTES_PER_PIXEL,
             f"decode_budget_mb must hold one image of max_image_pixels (at "
             f"{MAX_DECODE_BYTES_PER_PIXEL} bytes a pixel: "
             f"{-(-self.max_image_pixels * MAX_DECODE_BYTES_PER_PIXEL // MIB)} MB or more)"),
            (1 <= self.max_streams < self.rpc_threads,
             "max_streams must be at least 1 and below rpc_threads, so that unary calls "
             "always find a thread"),
            (self.stream_idle_s > 0, "stream_idle_s must be positive"),
            (self.max_upload_mb >= 1, "max_upload_mb must be at least 1"),
            (self.max_extract_mb >= 1, "max_extract_mb must be at least 1"),
            (self.max_extract_files >= 1, "max_extract_files must be at least 1"),
            (self.max_concurrent_rpcs >= 1, "max_concurrent_rpcs must be at least 1"),
            (self.dataset_retention_days >= 0,
             "dataset_retention_days must be 0 (keep datasets) or more"),
            (self.max_jobs >= 0, "max_jobs must be 0 (no training) or more"),
            (self.job_stop_s > 0, "job_stop_s must be positive"),
            (self.rpc_threads >= 1, "rpc_threads must be at least 1"),
            (self.grace_s >= 0, "grace_s must be 0 or more"),
            (self.http_port is None or 0 <= self.http_port <= 65535,
             "http_port must be a port number (0: any free port)"),
            ((self.tls_cert is None) == (self.tls_key is None),
             "TLS needs both --tls-cert and --tls-key"),
            (self.runtime in RUNTIME_CHOICES,
             f"runtime must be one of {', '.join(RUNTIME_CHOICES)}"),
            (all(r.partition("=")[2] in RUNTIME_CHOICES and r.partition("=")[0]
                 for r in self.model_runtime),
             f"model_runtime takes NAME=RUNTIME, RUNTIME one of {', '.join(RUNTIME_CHOICES)}"),
            (self.replicas >= 1, "replicas must be at least 1"),
            (self.min_replicas is None or self.max_replicas is not None,
             "--min-replicas needs --max-replicas (autoscaling bounds)"),
            (self.max_replicas is None or 1 <= (self.min_replicas or 1) <= self.max_replicas,
             "autoscaling needs 1 <= --min-replicas <= --max-replicas"),
            (self.replica_cpus >= 0 and self.job_cpus >= 0, "CPUs must be 0 or more"),
            (self.job_memory_mb >= 0, "job_memory_mb must be 0 or more"),
            (self.job_retries >= 0, "job_retries must be 0 or more"),
            (self.feature_shards >= 0, "feature_shards must be 0 (off) or more"),
            (self.feature_shard_min >= 1, "feature_shard_min must be at least 1"),
            (self.ray is None or self.ray.strip() != "",
             "--ray needs 'auto' or a cluster address HOST:PORT"),
            (self.ray is not None or not self.ray_only_settings(),
             f"{', '.join(self.ray_only_settings())} only apply with --ray"),
            (self.log_level.lower() in LOG_LEVELS,
             f"log_level must be one of {', '.join(LOG_LEVELS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)

    def runtime_for(self, name: str) -> str:
        """The runtime of model `name`: its --model-runtime, else --runtime."""
        chosen = dict(r.partition("=")[::2] for r in self.model_runtime)
        return chosen.get(name, self.runtime)

    def ray_only_settings(self) -> list[str]:
        """The Ray settings changed from their defaults (they mean nothing without --ray)."""
        return ["--" + f.name.replace("_", "-") for f in dataclasses.fields(self)
                if f.metadata["group"] == RAY and f.name != "ray"
                and getattr(self, f.name) != f.default]

    @property
    def replica_bounds(self) -> tuple[int, int]:
        """(fewest, most) replicas of a model: both --replicas without autoscaling."""
        if self.max_replicas is None:
            return self.replicas, self.replicas
        return self.min_replicas or 1, self.max_replicas

    def check_exposure(self, host: str) -> None:
        """Refuse to listen beyond this machine without a token, unless `insecure` says the
        operator means it: anyone who can reach the port could otherwise run jobs, fill
        the disk with uploads and read every model."""
        if self.token or self.insecure or is_loopback(host):
            return
        raise InvalidInputError(
            f"refusing to serve on {host} without a token: anyone who can reach it could use "
            "the server; set ZOO_TOKEN (or --token), or pass --insecure if this network is "
            "trusted")

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * MIB

    @property
    def decode_budget_bytes(self) -> int:
        return self.decode_budget_mb * MIB

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * MIB

    @property
    def max_extract_bytes(self) -> int:
        return self.max_extract_mb * MIB

    @property
    def memory_budget_bytes(self) -> int:
        return self.memory_budget_mb * MIB

    @property
    def decode_workers(self) -> int:
        return self.decode_threads or max(2, os.cpu_count() or 2)

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, overridden by `ZOO_SERVE_*` (and `ZOO_TOKEN`), overridden by `overrides`
        (None values in `overrides` are ignored, so unset CLI flags fall through)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = env_var(f.name)
            raw = env.get(var, "").strip()
            if raw:
                values[f.name] = parse(f.name, raw, var)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) only listens on
    this machine. Unknown names count as not loopback."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(ServerConfig))


def env_var(name: str) -> str:
    meta = next(f.metadata for f in settings() if f.name == name)
    return str(meta.get("env") or f"ZOO_SERVE_{name.upper()}")


def value_type(name: str) -> type:
    """The type a setting's text is parsed into: int, float, str, Path or tuple (names)."""
    hint = typing.get_type_hints(ServerConfig)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return tuple if typing.get_origin(hint) is tuple else hint


def parse(name: str, raw: str, where: str) -> Any:
    """A setting's value from text (an environment variable or a flag)."""
    kind = value_type(name)
    if kind is tuple:
        return tuple(n for n in raw.replace(",", " ").split() if n)
    if kind is bool:
        if raw.lower() not in _TRUE + _FALSE:
            raise InvalidInputError(f"{where}={raw!r} is not 1/0, true/false, yes/no or on/off")
        return raw.lower() in _TRUE
    try:
        return kind(raw) if kind in (int, float) else Path(raw).expanduser() if kind is Path else raw
    except ValueError:
        raise InvalidInputError(f"{where}={raw!r} is not a number") from None
