"""The server's settings: one frozen dataclass, filled from flags, then the environment,
then these defaults.

Every setting has an environment variable, `ZOO_SERVE_<NAME>` (e.g.
`ZOO_SERVE_MAX_BATCH_SIZE=64`), except the bearer token, which is `ZOO_TOKEN`, and the
home, which is `ZOO_HOME` as everywhere in Zoo.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError
from zoo.images import DEFAULT_MAX_PIXELS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    # Inference: dynamic batching per loaded model.
    max_batch_size: int = 32  # images (or texts) per compiled call
    max_queue_delay_ms: float = 5.0  # how long a batch may wait for more requests
    max_queue: int = 512  # inputs waiting per model; past it RESOURCE_EXHAUSTED
    batch_threads: int = 2  # batches of one model running at once
    memory_budget_mb: int = 4096  # loaded models' weights (parameters x 4 bytes)
    load_wait_s: float = 120.0  # a request waits this long for its model to load
    decode_threads: int = 0  # image decoding pool; 0: one per CPU core
    intra_op_threads: int = 0  # TensorFlow's pools; 0: TensorFlow's default
    inter_op_threads: int = 0
    preload: tuple[str, ...] = ()  # models to load (and warm up) before serving
    # Limits.
    max_message_mb: int = 64  # gRPC message size, both ways (gRPC's default is 4)
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # width x height, checked from the header
    max_upload_mb: int = 2048  # one UploadDataset stream
    max_extract_mb: int = 8192  # an archive's total uncompressed size
    max_extract_files: int = 200_000  # files in one archive
    max_concurrent_rpcs: int = 1024  # past it gRPC answers RESOURCE_EXHAUSTED
    rpc_threads: int = 64  # handler threads: concurrent RPCs in progress
    # Fine-tune jobs.
    max_jobs: int = 1  # jobs training at once; the rest wait in the queue
    job_stop_s: float = 30.0  # how long a cancelled/stopped job may take to checkpoint
    # Security.
    token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Operations.
    http_port: int | None = None  # Open Inference Protocol over HTTP; None: off, 0: any port
    metrics_port: int | None = None  # Prometheus /metrics; None: off, 0: any free port
    metrics_host: str = DEFAULT_HOST
    grace_s: float = 10.0  # graceful shutdown: in-flight calls get this long to finish
    log_level: str = "info"

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch_size >= 1, "max_batch_size must be at least 1"),
            (self.max_queue_delay_ms >= 0, "max_queue_delay_ms must be 0 or more"),
            (self.max_queue >= self.max_batch_size, "max_queue must be at least max_batch_size"),
            (self.batch_threads >= 1, "batch_threads must be at least 1"),
            (self.memory_budget_mb >= 1, "memory_budget_mb must be at least 1"),
            (self.max_message_mb >= 1, "max_message_mb must be at least 1"),
            (self.max_image_pixels >= 1, "max_image_pixels must be at least 1"),
            (self.max_upload_mb >= 1, "max_upload_mb must be at least 1"),
            (self.max_jobs >= 0, "max_jobs must be 0 (no training) or more"),
            (self.rpc_threads >= 1, "rpc_threads must be at least 1"),
            (self.http_port is None or 0 <= self.http_port <= 65535,
             "http_port must be a port number (0: any free port)"),
            ((self.tls_cert is None) == (self.tls_key is None),
             "TLS needs both --tls-cert and --tls-key"),
            (self.log_level.lower() in ("debug", "info", "warning", "error"),
             "log_level must be debug, info, warning or error"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * MIB

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
            var = "ZOO_TOKEN" if f.name == "token" else f"ZOO_SERVE_{f.name.upper()}"
            raw = env.get(var, "").strip()
            if raw:
                values[f.name] = _parse(f.name, raw, var)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_INTS = {"max_batch_size", "max_queue", "batch_threads", "memory_budget_mb", "decode_threads",
         "intra_op_threads", "inter_op_threads", "max_message_mb", "max_image_pixels",
         "max_upload_mb", "max_extract_mb", "max_extract_files", "max_concurrent_rpcs",
         "rpc_threads", "max_jobs", "http_port", "metrics_port"}
_FLOATS = {"max_queue_delay_ms", "load_wait_s", "job_stop_s", "grace_s"}


def _parse(name: str, raw: str, var: str) -> Any:
    try:
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
    except ValueError:
        raise InvalidInputError(f"{var}={raw!r} is not a number") from None
    if name in ("tls_cert", "tls_key"):
        return Path(raw).expanduser()
    if name == "preload":
        return tuple(n for n in raw.replace(",", " ").split() if n)
    return raw
