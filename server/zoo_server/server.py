"""Build, start and stop the Zoo gRPC server.

    server, port = create_server("127.0.0.1:0", home=tmp, config=ServerConfig(max_jobs=1))
    ...
    server.stop(grace=5)

`create_server` returns a started server (models in `config.preload` already loaded and
warm) and the port it bound, so tests can ask for port 0. `serve` is what `zoo serve`
runs: it logs, waits for SIGTERM/SIGINT and shuts down gracefully.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from zoo import config as zoo_config
from zoo_api.v1 import finetune_pb2, inference_pb2, models_pb2
from zoo_server import logs
from zoo_server.config import ServerConfig
from zoo_server.datasets import DatasetStore, Limits
from zoo_server.db import Database
from zoo_server.errors import ServerError
from zoo_server.handlers import StreamLimit, TokenAuth, generic_handler, health_handler
from zoo_server.inference import Inference
from zoo_server.jobs import JobManager
from zoo_server.loaders import kind_for
from zoo_server.logs import log_event
from zoo_server.manager import ModelManager
from zoo_server.metrics import Metrics
from zoo_server.oip import grpc_service as oip_grpc
from zoo_server.oip.backend import ZooBackend
from zoo_server.oip.http import OPEN_PATHS, HttpServer, OipHttp, build_app
from zoo_server.oip.interface import server_version
from zoo_server.paths import PathScrubber
from zoo_server.services.finetune import FineTuneService
from zoo_server.services.inference import InferenceService
from zoo_server.services.models import ModelService
from zoo_server.store import ModelStore
from zoo_server.web import page
from zoo_server.web.bridge import Bridge

ZOO_SERVICES = (  # zoo.v1, also over HTTP as JSON (zoo_server.web.bridge)
    models_pb2.DESCRIPTOR.services_by_name["ModelService"],
    inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
    finetune_pb2.DESCRIPTOR.services_by_name["FineTuneService"],
)
SERVICES = (
    *ZOO_SERVICES,
    oip_grpc.SERVICE,  # the Open Inference Protocol (inference.GRPCInferenceService)
)
SERVICE_NAMES = tuple(s.full_name for s in SERVICES)
PROBE_THREADS = 2  # health checks and OIP liveness/readiness: quick, so two threads serve many


def check_free(address: str, flag: str = "--port") -> None:
    """Fail with one clear line when the port is taken (gRPC's own failure is a C++ log line
    and a RuntimeError)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "0.0.0.0", int(port)))
        except OSError as e:
            raise ServerError(f"cannot listen on {address}: {e.strerror}; is another server "
                              f"running there? ({flag})") from None


def _configure_tensorflow(config: ServerConfig) -> None:
    if not (config.intra_op_threads or config.inter_op_threads):
        return
    from zoo.quiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    try:
        if config.intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)
        if config.inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
    except RuntimeError as e:  # TensorFlow already initialised in this process
        log_event("tensorflow_threads_not_set", error=str(e))


class ZooServer:
    """The running server: gRPC, the model manager, the job scheduler, metrics."""

    def __init__(self, config: ServerConfig, home: Path):
        self.config, self.home = config, home
        self.metrics = Metrics()
        self.db = Database(home / "server.db")
        self.store = ModelStore(home)
        limits = Limits(config.max_upload_bytes, config.max_extract_bytes,
                        config.max_extract_files)
        self.datasets = DatasetStore(home, self.db, limits, config.dataset_retention_days)
        self.datasets.cleanup()
        self.scrub = PathScrubber(home, zoo_config.hf_cache_dir())
        self.ray: Any = None  # with --ray: zoo_server.scale's cluster
        loaders, launcher = None, None
        if config.ray is not None:
            from zoo_server.scale.attach import attach

            self.ray, loaders, launcher = attach(config, home, self.metrics)
        self.manager = ModelManager(config, self.metrics, loaders)
        self.inference = Inference(config, self.store, self.manager)
        self._serving = threading.Event()  # up and not draining: OIP's ServerReady
        self.oip = ZooBackend(self.inference, self._serving.is_set)
        self.jobs = JobManager(home, self.db, self.store, self.datasets, config,
                               launcher=launcher)
        self.metrics.watch_jobs(self.jobs.counts)
        self.health = health.HealthServicer(
            experimental_non_blocking=True,
            experimental_thread_pool=ThreadPoolExecutor(1, thread_name_prefix="health"))
        # Probes (the health check, OIP's ServerLive/ServerReady) answer on threads of their
        # own, whatever holds the RPC pool; streams are capped below the pool's size.
        self.probes = ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="probe")
        self.streams = StreamLimit(config.max_streams, config.stream_idle_s)
        self.metrics.watch_streams(lambda: self.streams.open)
        options = [
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),  # a second server on the same port must fail to bind
        ]
        interceptors: list[grpc.ServerInterceptor] = (
            [TokenAuth(config.token, self.metrics, oip_grpc.OPEN_METHODS)] if config.token
            else [])
        self.grpc = grpc.server(
            ThreadPoolExecutor(config.rpc_threads, thread_name_prefix="rpc"),
            interceptors=interceptors, options=options,
            maximum_concurrent_rpcs=config.max_concurrent_rpcs)
        idle_s = config.stream_idle_s
        self.servicers = (ModelService(self.store, self.manager, idle_s),
                          InferenceService(self.inference),
                          FineTuneService(self.datasets, self.jobs, self.metrics, idle_s),
                          oip_grpc.GRPCInferenceService(self.oip))
        self.grpc.add_generic_rpc_handlers(
            (*(generic_handler(d, s, self.metrics, self.scrub, streams=self.streams,
                               probes=oip_grpc.OPEN_METHODS, probe_pool=self.probes)
               for d, s in zip(SERVICES, self.servicers, strict=True)),
             health_handler(self.health, self.probes)))
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc)
        self.port = 0
        self.host = "127.0.0.1"
        self.http: HttpServer | None = None
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self._metrics_server: Any = None
        self._stopped = threading.Event()

    def bind(self, address: str) -> int:
        check_free(address)
        if self.config.tls_cert is not None and self.config.tls_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(self.config.tls_key.read_bytes(), self.config.tls_cert.read_bytes())])
            add: Callable[[str], int] = functools.partial(self.grpc.add_secure_port,
                                                          server_credentials=credentials)
        else:
            add = self.grpc.add_insecure_port
        try:
            port = add(address)
        except RuntimeError as e:
            raise ServerError(f"cannot listen on {address}: {e}") from None
        if not port:
            raise ServerError(f"cannot listen on {address}")
        self.port = port
        self.host = address.rpartition(":")[0].strip("[]") or "0.0.0.0"
        return port

    def start(self) -> None:
        if self.config.metrics_port is not None:
            from prometheus_client import start_http_server

            self._metrics_server, _ = start_http_server(
                self.config.metrics_port, addr=self.config.metrics_host,
                registry=self.metrics.registry)
            self.metrics_port = int(self._metrics_server.server_address[1])
        self.jobs.start()
        self.datasets.start_expiry()
        for name in self.config.preload:
            self.preload(name)
        if self.config.http_port is not None:
            self.start_http(self.config.http_port)
        self.grpc.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._serving.set()

    def start_http(self, port: int) -> None:
        """HTTP on one port, with the same token and TLS as gRPC: the Open Inference
        Protocol on the same backend, zoo.v1 as JSON on the same servicers, the web page."""
        config = self.config
        api = OipHttp(self.oip, max_body_bytes=config.max_message_bytes,
                      threads=config.rpc_threads, metrics=self.metrics)
        bridge = Bridge(tuple(zip(ZOO_SERVICES, self.servicers, strict=False)),
                        max_body_bytes=config.max_message_bytes, threads=config.rpc_threads,
                        metrics=self.metrics, scrub=self.scrub)
        routes = [*api.routes, *bridge.routes, *page.routes(config, server_version())]
        app = build_app(routes, token=config.token, open_paths=(*OPEN_PATHS, *page.public_paths()))
        self.http = HttpServer(app, self.host, port, tls_cert=config.tls_cert,
                               tls_key=config.tls_key, grace_s=config.grace_s)
        self.http_port = self.http.start()

    @property
    def http_url(self) -> str | None:
        """Where the web page is, as a browser on this machine reaches it."""
        if self.http_port is None:
            return None
        scheme = "https" if self.config.tls_cert is not None else "http"
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"{scheme}://{address_of(host, self.http_port)}/"

    def preload(self, name: str) -> None:
        resolved = self.store.resolve(name)
        self.manager.release(self.manager.acquire(kind_for(resolved), resolved))

    def stop(self, grace: float | None = None) -> None:
        """Graceful: refuse new calls, let in-flight ones finish (up to `grace` seconds), ask
        running jobs to checkpoint and stop (they resume on the next start)."""
        if self._stopped.is_set():
            return
        grace = self.config.grace_s if grace is None else grace
        self._serving.clear()
        self.health.enter_graceful_shutdown()
        jobs = threading.Thread(target=self.jobs.shutdown, name="jobs-shutdown")
        jobs.start()
        http = threading.Thread(target=self.http.stop, args=(grace,), name="http-shutdown"
                                ) if self.http is not None else None
        if http is not None:
            http.start()
        self.grpc.stop(grace).wait()
        self.probes.shutdown(wait=False, cancel_futures=True)
        if http is not None:
            http.join()
        jobs.join()
        self.datasets.close()
        self.manager.close()
        self.inference.close()
        if self.ray is not None:
            self.ray.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self.db.close()
        self._stopped.set()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


def create_server(address: str = "127.0.0.1:0", *, home: str | Path | None = None,
                  config: ServerConfig | None = None) -> tuple[ZooServer, int]:
    """A started Zoo server listening on `address`, and the port it bound.

    `home` (default: ZOO_HOME) holds the cache, the model store, datasets, jobs and
    server.db. The server owns its process's ZOO_HOME: with `home` given, the variable is
    set to it, since the library reads it on every call.
    """
    config = config or ServerConfig.from_env()
    if home is not None:
        os.environ["ZOO_HOME"] = str(Path(home).expanduser().resolve())
    root = zoo_config.zoo_home().resolve()
    root.mkdir(parents=True, exist_ok=True)
    _configure_tensorflow(config)
    server = ZooServer(config, root)
    port = server.bind(address)
    try:
        server.start()
    except BaseException:
        server.stop(0)
        raise
    return server, port


def address_of(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def serve(host: str, port: int, *, home: str | Path | None = None,
          config: ServerConfig | None = None) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully (a second signal: at once)."""
    config = config or ServerConfig.from_env()
    config.check_exposure(host)
    logs.setup(config.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            log_event("killed", signal=signal.Signals(signum).name)
            os._exit(130)
        log_event("signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server, bound = create_server(address_of(host, port), home=home, config=config)
    log_event("serving", address=address_of(host, bound), port=bound, home=str(server.home),
              tls=config.tls_cert is not None, auth=config.token is not None,
              insecure=config.insecure, http_port=server.http_port, web=server.http_url,
              metrics_port=server.metrics_port, max_batch_size=config.max_batch_size,
              max_queue_delay_ms=config.max_queue_delay_ms, max_jobs=config.max_jobs,
              ray=server.ray.address if server.ray is not None else None)
    # One line for people (the logs on stderr are JSON): where to point gRPC and a browser.
    print(f"zoo serve: gRPC on {address_of(host, bound)}; "
          + (f"web page at {server.http_url}" if server.http_url
             else "no web page (add --http-port 8000)"), flush=True)
    while not stop.wait(0.5):
        pass
    log_event("shutting_down", grace_s=config.grace_s)
    server.stop(config.grace_s)
    log_event("stopped")
    return 0
