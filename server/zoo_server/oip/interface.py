"""What the Open Inference Protocol's servicers need from the server: `InferenceBackend`.

The gRPC servicer and the HTTP app speak only to this interface, so the protocol layer
(tensors, status codes, routes) does not know how models are stored, loaded or batched;
`zoo_server.oip.backend` implements it on the server's model store and model manager.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Protocol

from zoo.errors import InvalidInputError
from zoo_server.oip.tensors import InferRequest, InferResponse

SERVER_NAME = "zoo"
# binary_tensor_data: HTTP tensors as bytes after the JSON; parameters: request parameters
# (top_k, normalize) reach the model.
EXTENSIONS = ("binary_tensor_data", "parameters")
TIMEOUT = "timeout"  # request parameter (microseconds) that tritonclient sends


def server_version() -> str:
    try:
        return metadata.version("zoo")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model; -1 marks a dimension of variable size."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]  # versions a request may name; empty: not versioned
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Call:
    """The caller's side of one request: when it must be answered by (time.monotonic()),
    and whether the caller is still there."""

    deadline: float | None = None
    is_active: Callable[[], bool] | None = field(default=None, compare=False)

    def sooner(self, request: InferRequest) -> Call:
        """This call, with the deadline the request's `timeout` parameter sets if sooner."""
        timeout = request.parameters.get(TIMEOUT)
        if timeout is None:
            return self
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise InvalidInputError(f"the {TIMEOUT} parameter must be a non-negative number of "
                                    f"microseconds, got {timeout!r}")
        if timeout == 0:
            return self
        deadline = time.monotonic() + timeout / 1e6
        if self.deadline is not None:
            deadline = min(deadline, self.deadline)
        return Call(deadline, self.is_active)


class InferenceBackend(Protocol):
    """The server behind the protocol. Unknown models raise ModelNotFoundError, bad requests
    InvalidInputError, busy or loading models the server's own errors (zoo_server.errors):
    both protocols map them through the one status table."""

    def server_ready(self) -> bool:
        """Ready to serve inference (false while the server starts or drains)."""
        ...

    def model_ready(self, name: str, version: str) -> bool:
        """The model is loaded and answers without loading first."""
        ...

    def model_metadata(self, name: str, version: str) -> ModelMetadata: ...

    def infer(self, request: InferRequest, call: Call) -> InferResponse: ...
