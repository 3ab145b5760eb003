"""Prometheus metrics, on their own registry (so several servers can live in one process).

    zoo_requests_total{method,code}            RPCs finished, by method and status code
    zoo_request_seconds{method,code}           RPC latency histogram
    zoo_batch_size{model}                      inputs per compiled call (dynamic batching)
    zoo_batch_seconds{model}                   time of one compiled call
    zoo_queue_depth{model}                     inputs waiting for their model
    zoo_models_loaded / zoo_model_memory_bytes loaded models and their estimated weights
    zoo_jobs{state}                            fine-tune jobs by state
    zoo_streams_open                           streaming calls open (capped by --max-streams)
    zoo_upload_bytes_total                     dataset bytes received
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _JobsCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]):
        self.counts = counts

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily("zoo_jobs", "Fine-tune jobs by state", labels=["state"])
        for state, n in sorted(self.counts().items()):
            family.add_metric([state], n)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("zoo_requests", "RPCs finished", ["method", "code"], registry=r)
        self.latency = Histogram("zoo_request_seconds", "RPC latency", ["method", "code"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("zoo_batch_size", "Inputs per compiled call", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("zoo_batch_seconds", "Time of one compiled call",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("zoo_queue_depth", "Inputs waiting for their model", ["model"],
                                 registry=r)
        self.models_loaded = Gauge("zoo_models_loaded", "Models in memory", registry=r)
        self.model_memory = Gauge("zoo_model_memory_bytes", "Estimated bytes of loaded weights",
                                  registry=r)
        self.upload_bytes = Counter("zoo_upload_bytes", "Dataset bytes received", registry=r)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method, code).observe(seconds)

    def watch_jobs(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_JobsCollector(counts))

    def watch_streams(self, open_streams: Callable[[], int]) -> None:
        Gauge("zoo_streams_open", "Streaming calls open", registry=self.registry
              ).set_function(open_streams)
