"""The zoo.v1 servicers, one module per service: models (ModelService), inference
(InferenceService), finetune (FineTuneService).

Handlers raise typed exceptions; `zoo_server.handlers` maps them to status codes. Each
handler validates everything it can (names, top_k, empty batches) before touching a
model, so bad requests are cheap.
"""

from __future__ import annotations

import grpc

from zoo_api.v1 import common_pb2
from zoo_server.inference import deadline_at
from zoo_server.store import Resolved


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The call's deadline on the time.monotonic() clock; None when it has none."""
    return deadline_at(context.time_remaining())


def spec_of(resolved: Resolved) -> common_pb2.ModelSpec:
    return common_pb2.ModelSpec(name=resolved.name, version=resolved.version)
