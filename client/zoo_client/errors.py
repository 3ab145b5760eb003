"""gRPC failures as a small exception hierarchy that keeps the status code.

Catch `ModelNotFound` or `InvalidInput` instead of inspecting status codes; every
exception still carries `.code` (a `grpc.StatusCode`) and the server's message.
"""

from __future__ import annotations

import grpc


class ZooClientError(Exception):
    """Base of every error the client raises for a failed call."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class ModelNotFound(ZooClientError):
    """NOT_FOUND: no such model, version, dataset or job."""

    code = grpc.StatusCode.NOT_FOUND


class InvalidInput(ZooClientError):
    """INVALID_ARGUMENT: a bad image, text, argument or dataset."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Unavailable(ZooClientError):
    """UNAVAILABLE: the server is down, restarting or still loading the model."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ZooClientError):
    """UNAUTHENTICATED: a missing or wrong token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ZooClientError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ZooClientError):
    """RESOURCE_EXHAUSTED: the server is overloaded or an upload is over its limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ZooClientError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class FailedPrecondition(ZooClientError):
    """FAILED_PRECONDITION: e.g. offline and not cached, or cancelling a finished job."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DataLoss(ZooClientError):
    """DATA_LOSS: a downloaded file failed its checksum."""

    code = grpc.StatusCode.DATA_LOSS


class Cancelled(ZooClientError):
    code = grpc.StatusCode.CANCELLED


class ServerError(ZooClientError):
    """INTERNAL, UNKNOWN and the rest: a fault on the server's side."""


_BY_CODE: dict[grpc.StatusCode, type[ZooClientError]] = {
    cls.code: cls
    for cls in (ModelNotFound, InvalidInput, Unavailable, Unauthenticated, PermissionDenied,
                ResourceExhausted, DeadlineExceeded, FailedPrecondition, DataLoss, Cancelled)
}


def from_rpc_error(error: grpc.RpcError) -> ZooClientError:
    """The typed exception for a failed call (raise it `from error`)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    kind = _BY_CODE.get(code, ServerError)
    return kind(details or code.name, code)


def from_code_name(name: str, message: str) -> ZooClientError:
    """The typed exception for a status code given by name (ClassifyStream's per-item errors)."""
    code = getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(code, ServerError)(message, code)
