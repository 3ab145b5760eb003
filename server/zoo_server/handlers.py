"""How the zoo.v1 services are registered: safe request parsing, the error table applied
to every method, metrics and request logs, and bearer-token auth.

Handlers are built from the services' descriptors instead of the generated
`add_*Servicer_to_server`, for one reason: a request that protobuf cannot parse (a
string field that is not UTF-8, truncated bytes) must be INVALID_ARGUMENT with a message
that says so, where gRPC's own deserializer failure is an opaque INTERNAL. The
deserializer here never raises; it hands the handler a `BadRequest`, which the wrapper
turns into INVALID_ARGUMENT (or, inside a request stream, into an InvalidInputError at
the bad message).
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from zoo.errors import InvalidInputError
from zoo_server.errors import status_for
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
        if isinstance(request, BadRequest):
            raise InvalidInputError(request.message)
        yield request


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
         metrics: Metrics | None, scrub: Callable[[str], str] | None = None
         ) -> Callable[..., Any]:
    """`fn` with parsing errors, the status table (messages passed through `scrub`), metrics
    and logs applied."""

    def prepare(request: Any) -> Any:
        if request_streaming:
            return _checked(request)
        if isinstance(request, BadRequest):
            raise InvalidInputError(request.message)
        return request

    if response_streaming:
        @functools.wraps(fn)
        def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(method, metrics, scrub)
            try:
                yield from fn(prepare(request), context)
            except Exception as e:
                call.fail(e, context)
            finally:
                call.finish(context)

        return streaming

    @functools.wraps(fn)
    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        call = _Call(method, metrics, scrub)
        try:
            return fn(prepare(request), context)
        except Exception as e:
            call.fail(e, context)
        finally:
            call.finish(context)

    return unary


def generic_handler(service: ServiceDescriptor, servicer: Any, metrics: Metrics | None,
                    scrub: Callable[[str], str] | None = None) -> grpc.GenericRpcHandler:
    handlers = {}
    for m in service.methods:
        request_cls = GetMessageClass(m.input_type)
        response_cls = GetMessageClass(m.output_type)
        fn = wrap(m.name, getattr(servicer, m.name), m.client_streaming, m.server_streaming,
                  metrics, scrub)
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
