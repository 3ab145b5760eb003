"""zoo.v1 over HTTP as JSON: every RPC of every zoo.v1 service, with no code per method.

    POST /api/v1/{Service}/{Method}       Service: "ModelService" or "zoo.v1.ModelService"

The method's descriptor decides everything (like Connect's and Twirp's JSON mode):

- **unary**: the body is the request message in protobuf's JSON mapping (`json_format`:
  field names as in the .proto or lowerCamelCase, bytes as base64, enums by name); the
  answer is the response message, with the .proto's field names, every field present,
  enums by name and 64-bit integers as strings (the standard mapping).
- **server-streaming** (FetchModel, WatchJob): one message per line (`application/x-ndjson`),
  or Server-Sent Events when the request sends `Accept: text/event-stream`. A failure before
  the first message is an ordinary error answer; after it, a last line `{"error": ...}`.
  A client that goes away ends the call as a cancelled gRPC call ends.
- **uploads** (UploadDataset: a request that is a oneof of a header message and bytes
  chunks): the body is the file itself, streamed to the servicer in chunks as it arrives,
  never held whole; the header's fields come from the query string
  (`?format=IMAGE_ZIP&sha256=<hex>&size=<bytes>&name=...`, size defaulting to
  Content-Length). The servicer checks them as it checks gRPC uploads: `--max-upload-mb`,
  and the bytes against size and sha256.
- **other request streams** (ClassifyStream): a body of request messages, one JSON per
  line (at most --max-message-mb), and the answers as a response stream.

Errors are `{"error": message, "code": "NOT_FOUND"}` with the HTTP status the Open
Inference Protocol's REST side gives the same gRPC code (`oip.http.HTTP_STATUS`), from the
same status table, messages scrubbed of server paths. Bodies over the limit are 413.

Requests must say they are JSON (or, for uploads, a non-form content type): a cross-site
page can send form-like "simple" requests without asking, and those are refused, as is any
request whose Origin is not this server's, so a browser never runs a call for another site.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from zoo.errors import InvalidInputError
from zoo_server.errors import quote
from zoo_server.metrics import Metrics
from zoo_server.oip.http import http_failure, read_body

PREFIX = "/api/v1"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
# Content types a cross-site form or fetch may send without a CORS preflight.
_SIMPLE_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
_END = object()


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def from_json(data: Any, cls: type[Message]) -> Message:
    """`data` (parsed JSON) as a `cls` message; what does not fit is INVALID_ARGUMENT."""
    message = cls()
    try:
        json_format.ParseDict(data, message)
    except (json_format.ParseError, TypeError, ValueError) as e:
        raise InvalidInputError(f"the request is not a valid {cls.DESCRIPTOR.full_name}: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                                ) from None
    return message


def parse_json(body: bytes, what: str = "the request body") -> Any:
    try:
        return json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{what} is not JSON: {e}") from None


def close(replies: Iterator[Any]) -> None:
    """End a servicer's stream: a generator waiting at a yield is closed (its cleanup runs);
    one running on a worker thread sees its context inactive and returns by itself."""
    closer = getattr(replies, "close", None)
    if closer is not None:
        try:
            closer()
        except ValueError:  # "generator already executing"
            pass


class HttpContext:
    """What the servicers ask of a grpc.ServicerContext, for a call that came over HTTP:
    is the caller still there, and how long it may take (no deadline: HTTP has none)."""

    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> None:
        self.active = False


@dataclass(frozen=True)
class Method:
    service: str  # full name, zoo.v1.ModelService
    descriptor: MethodDescriptor
    handler: Callable[..., Any]
    request: type[Message]
    upload: tuple[str, str] | None  # (header field, chunk field) of an upload's oneof

    @property
    def name(self) -> str:
        return str(self.descriptor.name)


def upload_fields(request: type[Message]) -> tuple[str, str] | None:
    """(header, chunk) when `request` is a oneof of one message field and one bytes field:
    the shape of a chunked upload."""
    for oneof in request.DESCRIPTOR.oneofs:
        kinds = {f.type: f.name for f in oneof.fields}
        if len(oneof.fields) == 2 and set(kinds) == {FieldDescriptor.TYPE_MESSAGE,
                                                      FieldDescriptor.TYPE_BYTES}:
            return kinds[FieldDescriptor.TYPE_MESSAGE], kinds[FieldDescriptor.TYPE_BYTES]
    return None


class Bridge:
    """The routes that put `services` (descriptor, servicer) on HTTP."""

    def __init__(self, services: Sequence[tuple[ServiceDescriptor, Any]], *, max_body_bytes: int,
                 threads: int, metrics: Metrics | None = None,
                 scrub: Callable[[str], str] | None = None):
        self.methods: dict[tuple[str, str], Method] = {}
        for service, servicer in services:
            for m in service.methods:
                request = GetMessageClass(m.input_type)
                method = Method(service.full_name, m, getattr(servicer, m.name), request,
                                upload_fields(request) if m.client_streaming else None)
                self.methods[(service.full_name, m.name)] = method
                self.methods[(service.name, m.name)] = method
        self.max_body = max_body_bytes
        self.limiter = anyio.CapacityLimiter(threads)
        self.metrics, self.scrub = metrics, scrub

    @property
    def routes(self) -> list[BaseRoute]:
        return [Route(PREFIX + "/{service}/{method}", self.call, methods=["POST"])]

    def failure(self, error: BaseException) -> tuple[int, dict[str, str]]:
        """The HTTP status and JSON body for `error`."""
        status, code, message = http_failure(error, self.scrub)
        return status, {"error": message, "code": code}

    def error(self, error: BaseException) -> JSONResponse:
        status, body = self.failure(error)
        return JSONResponse(body, status)

    async def call(self, request: Request) -> Response:
        started = time.perf_counter()
        service, name = request.path_params["service"], request.path_params["method"]
        method = self.methods.get((service, name))
        if method is None:
            known = sorted({f"{m.service.rpartition('.')[2]}/{m.name}"
                            for m in self.methods.values()})
            response: Response = JSONResponse(
                {"error": f"no method {quote(f'{service}/{name}')}; known: {', '.join(known)}",
                 "code": "NOT_FOUND"}, 404)
        elif (refused := self._refusal(request, method)) is not None:
            response = refused
        else:
            try:
                response = await self._dispatch(method, request)
            except Exception as e:
                response = self.error(e)
        if self.metrics is not None:  # beside the gRPC methods, by HTTP status
            self.metrics.observe_rpc(f"http.{name}", str(response.status_code),
                                     time.perf_counter() - started)
        return response

    @staticmethod
    def _refusal(request: Request, method: Method) -> JSONResponse | None:
        """403 for another site's page, 415 for a body that does not say it is JSON (or, for
        an upload, a file): what a browser sends cross-site without asking first."""
        origin = request.headers.get("origin")
        if origin is not None and origin.partition("://")[2] != request.headers.get("host"):
            return JSONResponse({"error": f"cross-origin request from {quote(origin)} refused",
                                 "code": "PERMISSION_DENIED"}, 403)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        accepted = kind not in _SIMPLE_TYPES if method.upload else kind in ("", "application/json",
                                                                            NDJSON)
        if accepted:
            return None
        wanted = ("the file as application/octet-stream" if method.upload
                  else "Content-Type: application/json")
        return JSONResponse({"error": f"Content-Type {quote(kind)} is not accepted here; send "
                                      f"{wanted}", "code": "INVALID_ARGUMENT"}, 415)

    async def _dispatch(self, method: Method, request: Request) -> Response:
        context = HttpContext()
        if method.upload is not None:
            return await self._unary(method, self._upload_messages(method, request), context)
        body = await read_body(request, self.max_body)
        if method.descriptor.client_streaming:
            lines = [line for line in body.splitlines() if line.strip()]
            message: Any = iter([from_json(parse_json(line, f"line {i + 1}"), method.request)
                                 for i, line in enumerate(lines)])
        else:
            message = from_json(parse_json(body), method.request)
        if method.descriptor.server_streaming:
            return await self._stream(method, message, context, request)
        return await self._unary(method, message, context)

    async def _unary(self, method: Method, message: Any, context: HttpContext) -> Response:
        reply = await anyio.to_thread.run_sync(method.handler, message, context,
                                               limiter=self.limiter)
        return JSONResponse(to_json(reply))

    async def _stream(self, method: Method, message: Any, context: HttpContext,
                      request: Request) -> Response:
        replies: Iterator[Message] = iter(method.handler(message, context))
        first = await anyio.to_thread.run_sync(next, replies, _END, limiter=self.limiter)
        sse = SSE in request.headers.get("accept", "")

        def frame(data: dict[str, Any], event: str = "message") -> bytes:
            text = json.dumps(data, separators=(",", ":"))
            return (f"event: {event}\ndata: {text}\n\n" if sse else text + "\n").encode()

        async def lines() -> AsyncIterator[bytes]:
            reply = first
            try:
                while reply is not _END:
                    assert isinstance(reply, Message)
                    yield frame(to_json(reply))
                    reply = await anyio.to_thread.run_sync(
                        next, replies, _END, limiter=self.limiter, abandon_on_cancel=True)
            except Exception as e:
                status, body = self.failure(e)
                yield frame({"error": {**body, "status": status}}, "error")
            finally:  # done, or the client went away: the servicer stops as when cancelled
                context.cancel()
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(close, replies)

        return StreamingResponse(lines(), media_type=SSE if sse else NDJSON,
                                 headers={"Cache-Control": "no-store"})

    def _upload_messages(self, method: Method, request: Request) -> Iterator[Message]:
        """The upload's messages: the header from the query string, then the body's chunks
        as they arrive (read from the event loop by the servicer's thread)."""
        assert method.upload is not None
        header_field, chunk_field = method.upload
        header_cls: type[Message] = type(getattr(method.request(), header_field))
        fields = dict(request.query_params)
        declared = request.headers.get("content-length", "")
        if "size" in header_cls.DESCRIPTOR.fields_by_name and "size" not in fields \
                and declared.isdigit():
            fields["size"] = declared
        header = from_json(fields, header_cls)
        stream = request.stream().__aiter__()

        async def next_chunk() -> bytes | None:
            try:
                return await stream.__anext__()
            except StopAsyncIteration:
                return None

        def messages() -> Iterator[Message]:
            yield method.request(**{header_field: header})
            while (chunk := anyio.from_thread.run(next_chunk)) is not None:
                if chunk:
                    yield method.request(**{chunk_field: chunk})

        return messages()


__all__ = ["PREFIX", "Bridge", "HttpContext", "from_json", "to_json", "upload_fields"]
