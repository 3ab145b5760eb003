"""Server-side errors and the one table that maps every exception type to a gRPC status.

Handlers raise typed exceptions (the library's `zoo.errors` and the ones below) and never
call `context.abort` themselves; the wrapper in `zoo_server.handlers` looks the exception
up here. The table is ordered subclasses first: the first matching row wins.

Messages quote what the client sent through `quote`, which cuts it short: a status message
travels in a trailer that gRPC caps (8 KiB by default), so a 1 MB id echoed whole turns a
NOT_FOUND into RESOURCE_EXHAUSTED. `status_for` caps the whole message as a last resort and
can rewrite server paths (`zoo_server.paths`) so that no absolute path reaches a client.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from zoo.errors import (
    CacheError,
    ChecksumMismatchError,
    InvalidInputError,
    ManifestError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    ParityError,
    RuntimeUnavailableError,
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


class LimitExceededError(ServerError):
    """A request over one of the server's limits (inputs per request, the decode budget,
    streams open at once); the message names the setting."""


class IdleStreamError(ServerError):
    """A stream waited longer than the idle limit for its next message or event."""


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
    (LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (IdleStreamError, grpc.StatusCode.DEADLINE_EXCEEDED),
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
    (RuntimeUnavailableError, grpc.StatusCode.FAILED_PRECONDITION),
    (ParityError, grpc.StatusCode.FAILED_PRECONDITION),
    (OfflineError, grpc.StatusCode.FAILED_PRECONDITION),
    (NetworkError, grpc.StatusCode.UNAVAILABLE),
    (CacheError, grpc.StatusCode.FAILED_PRECONDITION),
    (ManifestError, grpc.StatusCode.INTERNAL),
    (ServerError, grpc.StatusCode.INTERNAL),
    (ZooError, grpc.StatusCode.INTERNAL),
    (MemoryError, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


QUOTE_LIMIT = 200  # characters of a client string an error message quotes
MESSAGE_LIMIT = 2000  # characters of any status message (gRPC's trailer limit is 8 KiB)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`value` quoted for an error message, cut to `limit` characters with its length
    said, so that what a client sent is recognisable but never echoed whole."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of `error`'s message (its type's name when it has none), cut at
    `limit` characters."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def status_for(error: BaseException, scrub: Callable[[str], str] | None = None
               ) -> tuple[grpc.StatusCode, str]:
    """The status code and one-line message a client sees for `error`; `scrub` rewrites
    the message first (the server passes one that makes server paths relative)."""
    for kind, code in STATUS_TABLE:
        if isinstance(error, kind):
            message = first_line(error)
            if scrub is not None:
                message = scrub(message)
            if len(message) > MESSAGE_LIMIT:
                message = message[:MESSAGE_LIMIT] + "... (message cut)"
            return code, message
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see the server log"
