"""Server-side errors and the one table that maps every exception type to a gRPC status.

Handlers raise typed exceptions (the library's `zoo.errors` and the ones below) and never
call `context.abort` themselves; the wrapper in `zoo_server.handlers` looks the exception
up here. The table is ordered subclasses first: the first matching row wins.
"""

from __future__ import annotations

import grpc

from zoo.errors import (
    CacheError,
    ChecksumMismatchError,
    InvalidInputError,
    ManifestError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    WeightsNotFoundError,
    ZooError,
)


class ServerError(ZooError):
    """Base of the errors only the server raises."""


class NotFoundError(ServerError, LookupError):
    """An unknown job or dataset id (unknown models are the library's ModelNotFoundError)."""


class QueueFullError(ServerError):
    """A model's request queue is full: the caller should back off and retry."""


class MemoryBudgetError(ServerError):
    """A model does not fit the memory budget even after evicting idle models."""


class UploadTooLargeError(ServerError):
    """An upload is over the server's size limit."""


class ModelLoadingError(ServerError):
    """The model is still downloading or loading; retry shortly."""


class ModelUnloadedError(ServerError):
    """The model was unloaded while the request waited; retry (it loads again)."""


class ShuttingDownError(ServerError):
    """The server is draining and takes no new work."""


class JobStateError(ServerError):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""


class RequestDeadlineError(ServerError):
    """The request's deadline passed before its work ran."""


class RequestCancelledError(ServerError):
    """The client went away before its work ran."""


class UnauthenticatedError(ServerError):
    """No valid bearer token."""


# Subclasses before their bases: the first row whose type matches decides the code.
STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (QueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (MemoryBudgetError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UploadTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ModelLoadingError, grpc.StatusCode.UNAVAILABLE),
    (ModelUnloadedError, grpc.StatusCode.UNAVAILABLE),
    (ShuttingDownError, grpc.StatusCode.UNAVAILABLE),
    (JobStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (RequestDeadlineError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (RequestCancelledError, grpc.StatusCode.CANCELLED),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (WeightsNotFoundError, grpc.StatusCode.NOT_FOUND),
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (ChecksumMismatchError, grpc.StatusCode.DATA_LOSS),
    (OfflineError, grpc.StatusCode.FAILED_PRECONDITION),
    (NetworkError, grpc.StatusCode.UNAVAILABLE),
    (CacheError, grpc.StatusCode.FAILED_PRECONDITION),
    (ManifestError, grpc.StatusCode.INTERNAL),
    (ServerError, grpc.StatusCode.INTERNAL),
    (ZooError, grpc.StatusCode.INTERNAL),
    (MemoryError, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and one-line message a client sees for `error`."""
    for kind, code in STATUS_TABLE:
        if isinstance(error, kind):
            message = str(error).strip() or type(error).__name__
            return code, message.splitlines()[0]
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see the server log"
