"""How the zoo.v1 services are registered: safe request parsing, the error table applied
to every method, metrics and request logs, limits on streams, and bearer-token auth.

Handlers are built from the services' descriptors instead of the generated
`add_*Servicer_to_server`, for one reason: a request that protobuf cannot parse (a
string field that is not UTF-8, truncated bytes) must be INVALID_ARGUMENT with a message
that says so, where gRPC's own deserializer failure is an opaque INTERNAL. The
deserializer here never raises; it hands the handler a `BadRequest`, which the wrapper
turns into INVALID_ARGUMENT (or, inside a request stream, into an InvalidInputError at
the bad message).

Streams are limited here too, for every streaming method of every service (`StreamLimit`):
how many may be open at once, and how long a client stream may stay silent. Probes (the
health check, OIP's ServerLive and ServerReady) run on a pool of their own (`run_on`), so
they answer however busy the RPC pool is.
"""

from __future__ import annotations

import functools
import hmac
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from zoo.errors import InvalidInputError
from zoo_server.errors import IdleStreamError, LimitExceededError, status_for
from zoo_server.logs import log_event
from zoo_server.metrics import Metrics


class BadRequest:
    """What the deserializer returns for bytes that are not a valid request."""

    def __init__(self, message: str):
        self.message = message


def safe_deserializer(cls: type[Message]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as e:
            detail = str(e)
            if "UTF-8" in detail:
                detail += " (every text field must be valid UTF-8)"
            return BadRequest(f"the request is not a valid {cls.DESCRIPTOR.full_name}: {detail}")

    return deserialize


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        yield _parsed(request)


def _parsed(request: Any) -> Any:
    if isinstance(request, BadRequest):
        raise InvalidInputError(request.message)
    return request


# --- streams ---------------------------------------------------------------------------------


class StreamLimit:
    """How many streaming calls may be open at once, and how long a client stream may stay
    silent.

    gRPC Python's sync server runs every call on one pool of `rpc_threads` threads, and a
    streaming call holds its thread as long as it is open: 70 uploads that sent a header and
    stalled took all 64 threads, and Health, ListModels and Classify queued behind them.
    Capped at `max_streams` (below `rpc_threads`), streams leave the rest of the pool to unary
    calls; one over the cap is refused at once (RESOURCE_EXHAUSTED). A client stream that
    sends nothing for `idle_s` seconds ends with DEADLINE_EXCEEDED (`IdleRequests`).
    """

    def __init__(self, max_streams: int, idle_s: float):
        self.max_streams, self.idle_s = max_streams, idle_s
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        with self._lock:
            return self._open

    @contextmanager
    def slot(self, method: str) -> Iterator[None]:
        with self._lock:
            if self._open >= self.max_streams:
                raise LimitExceededError(
                    f"{method}: {self._open} streaming calls are open, the server's limit "
                    f"(--max-streams); retry when one has ended")
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


class IdleRequests(Iterator[Any]):
    """A client stream's messages, read on a thread of its own so that the handler waits for
    each with a timeout: after `idle_s` seconds without one, `next` raises IdleStreamError.

    gRPC's request iterator blocks without a timeout, and a server-side context cannot be
    cancelled from another thread, hence the reader. It reads ahead at most two messages
    (one queued, one in hand), and it ends when the call ends: gRPC then ends the iterator
    it is blocked in, so a silent client costs no thread once its stream is closed.
    """

    def __init__(self, requests: Iterator[Any], idle_s: float, method: str):
        self.idle_s, self.method = idle_s, method
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        self._done = False
        threading.Thread(target=self._read, args=(requests,), name=f"stream-reader:{method}",
                         daemon=True).start()

    def _read(self, requests: Iterator[Any]) -> None:
        try:
            for request in requests:
                if not self._put(request):
                    return
            self._put(_END)
        except BaseException as e:  # the client cancelled (grpc.RpcError) or the call ended
            self._put(_Failed(e))

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """The handler is done: the reader stops handing messages over."""
        self._closed.set()

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            item = self._queue.get(timeout=self.idle_s)
        except queue.Empty:
            self._done = True
            raise IdleStreamError(
                f"{self.method}: the client sent nothing for {self.idle_s:g} s (the server's "
                "--stream-idle); the stream is closed") from None
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.error
        return _parsed(item)


def run_on(pool: ThreadPoolExecutor, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """`behaviour`, marked to run on `pool` instead of the server's RPC pool.

    gRPC Python runs a method handler on the executor named by its behaviour's
    `experimental_thread_pool` attribute (grpc._server._select_thread_pool_for_behavior; the
    standard health servicer's Watch relies on it). Probes get a pool of their own this way,
    so a health check answers even while every RPC thread is busy.
    """

    @functools.wraps(behaviour)
    def probe(*args: Any) -> Any:
        return behaviour(*args)

    probe.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return probe


def health_handler(servicer: Any, pool: ThreadPoolExecutor) -> grpc.GenericRpcHandler:
    """grpc.health.v1.Health with Check on the probes' pool (Watch is non-blocking already)."""
    from grpc_health.v1 import health, health_pb2

    return grpc.method_handlers_generic_handler(health.SERVICE_NAME, {
        "Check": grpc.unary_unary_rpc_method_handler(
            run_on(pool, servicer.Check),
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(
            servicer.Watch, request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
    })


class _Call:
    """Bookkeeping for one RPC: its status code, latency, metrics and log line."""

    def __init__(self, method: str, metrics: Metrics | None,
                 scrub: Callable[[str], str] | None = None):
        self.method, self.metrics, self.scrub = method, metrics, scrub
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK

    def fail(self, error: BaseException, context: grpc.ServicerContext) -> None:
        if not context.is_active():  # the client cancelled or its deadline passed: not an error
            remaining = context.time_remaining()
            self.code = (grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None
                         and remaining <= 0 else grpc.StatusCode.CANCELLED)
            context.abort(self.code, "the call ended before the server answered")
        self.code, message = status_for(error, self.scrub)
        if self.code == grpc.StatusCode.INTERNAL:
            log_event("rpc_internal_error", logging.ERROR, exc_info=error, method=self.method,
                      error=f"{type(error).__name__}: {error}")
        context.abort(self.code, message)

    def finish(self, context: grpc.ServicerContext) -> None:
        if self.code == grpc.StatusCode.OK and not context.is_active():
            self.code = grpc.StatusCode.CANCELLED
        seconds = time.perf_counter() - self.started
        code = self.code.name
        if self.metrics is not None:
            self.metrics.observe_rpc(self.method, code, seconds)
        log_event("rpc", logging.DEBUG, method=self.method, code=code, ms=round(seconds * 1e3, 2))


def wrap(method: str, fn: Callable[..., Any], request_streaming: bool, response_streaming: bool,
         metrics: Metrics | None, scrub: Callable[[str], str] | None = None,
         streams: StreamLimit | None = None) -> Callable[..., Any]:
    """`fn` with parsing errors, the status table (messages passed through `scrub`), metrics
    and logs applied, and, for a streaming method, a slot of `streams` held while it runs
    and its client stream read with the idle limit."""

    @contextmanager
    def opened(request: Any) -> Iterator[Any]:
        if not (request_streaming or response_streaming):
            yield _parsed(request)
            return
        with streams.slot(method) if streams is not None else nullcontext():
            if not request_streaming:
                yield _parsed(request)
            elif streams is None:
                yield _checked(request)
            else:
                requests = IdleRequests(request, streams.idle_s, method)
                try:
                    yield requests
                finally:
                    requests.close()

    if response_streaming:
        @functools.wraps(fn)
        def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(method, metrics, scrub)
            try:
                with opened(request) as prepared:
                    yield from fn(prepared, context)
            except Exception as e:
                call.fail(e, context)
            finally:
                call.finish(context)

        return streaming

    @functools.wraps(fn)
    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        call = _Call(method, metrics, scrub)
        try:
            with opened(request) as prepared:
                return fn(prepared, context)
        except Exception as e:
            call.fail(e, context)
        finally:
            call.finish(context)

    return unary


def generic_handler(service: ServiceDescriptor, servicer: Any, metrics: Metrics | None,
                    scrub: Callable[[str], str] | None = None, *,
                    streams: StreamLimit | None = None, probes: Collection[str] = (),
                    probe_pool: ThreadPoolExecutor | None = None) -> grpc.GenericRpcHandler:
    """The service's methods, each wrapped (`wrap`): every streaming one counted against
    `streams`; those whose full name is in `probes` run on `probe_pool`."""
    handlers = {}
    for m in service.methods:
        request_cls = GetMessageClass(m.input_type)
        response_cls = GetMessageClass(m.output_type)
        fn = wrap(m.name, getattr(servicer, m.name), m.client_streaming, m.server_streaming,
                  metrics, scrub, streams)
        if probe_pool is not None and f"/{service.full_name}/{m.name}" in probes:
            fn = run_on(probe_pool, fn)
        factory = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(m.client_streaming, m.server_streaming)]
        handlers[m.name] = factory(fn, request_deserializer=safe_deserializer(request_cls),
                                   response_serializer=response_cls.SerializeToString)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


# --- auth ------------------------------------------------------------------------------------


class TokenAuth(grpc.ServerInterceptor):
    """Every call needs `authorization: Bearer <token>`, except the health service and
    `open_methods` (load balancers and orchestrators probe them without credentials).
    Compared in constant time."""

    OPEN_PREFIXES = ("/grpc.health.v1.Health/",)

    def __init__(self, token: str, metrics: Metrics | None = None,
                 open_methods: tuple[str, ...] = ()):
        self._expected = f"Bearer {token}".encode()
        self._metrics = metrics
        self._open = self.OPEN_PREFIXES + open_methods

    def intercept_service(self, continuation: Callable[..., Any],
                          details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        if method.startswith(self._open):
            return continuation(details)
        supplied = b""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                supplied = value.encode() if isinstance(value, str) else value
        if hmac.compare_digest(supplied, self._expected):
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return None
        message = ("missing bearer token: send metadata 'authorization: Bearer <token>'"
                   if not supplied else "invalid bearer token")
        name = method.rsplit("/", 1)[-1]
        metrics = self._metrics

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            if metrics is not None:
                metrics.observe_rpc(name, "UNAUTHENTICATED", 0.0)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        def deny_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            deny(request, context)
            yield  # pragma: no cover - abort raised

        kind = (handler.request_streaming, handler.response_streaming)
        factory = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[kind]
        return factory(deny_stream if handler.response_streaming else deny,
                       request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)
