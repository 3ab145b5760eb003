"""The Open Inference Protocol over HTTP/REST: a Starlette app, served by uvicorn on a thread
of the server process (`zoo serve --http-port`).

    GET  /v2/health/live                       {"live": true}
    GET  /v2/health/ready                      {"ready": true}; 400 while not ready
    GET  /v2                                   server metadata
    GET  /v2/models/NAME[/versions/V]          model metadata
    GET  /v2/models/NAME[/versions/V]/ready    {"name", "ready"}; 400 while not loaded
    POST /v2/models/NAME[/versions/V]/infer    JSON tensors, or JSON then binary tensors
                                               (Inference-Header-Content-Length)

Health answers 200 for true and a 4xx for false, as the protocol says (400, as Triton does).
Errors are `{"error": "..."}` with the HTTP status that Google's API guidelines give the
gRPC code of the same error (the one status table in zoo_server.errors), so both
protocols report a failure alike: 400 bad input, 404 unknown model, 429 queue full, 503
loading or draining, 401 without the bearer token (and 413 for a body over the limit). Requests run in worker threads (at most
`threads` at once), the event loop only moves bytes. `routes` and `build_app` let other
pages (a web UI, a JSON mirror of zoo.v1) share the app, its auth and its server.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from zoo.errors import InvalidInputError
from zoo_server.errors import ServerError, UploadTooLargeError, status_for
from zoo_server.logs import log_event
from zoo_server.metrics import Metrics
from zoo_server.oip import tensors
from zoo_server.oip.interface import (
    EXTENSIONS,
    SERVER_NAME,
    Call,
    InferenceBackend,
    ModelMetadata,
    server_version,
)

# google.rpc.Code -> HTTP status, as Google's API design guide maps them.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
}
NOT_READY = 400  # health "false": a 4xx, as the protocol asks and Triton answers
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")  # probes need no token
_DECOMPRESS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def http_failure(error: BaseException, scrub: Callable[[str], str] | None = None
                 ) -> tuple[int, str, str]:
    """(HTTP status, gRPC status name, message) for `error`, for both HTTP fronts (OIP and
    the page's JSON bridge): a body over its limit is 413, which HTTP has for it; an
    internal error is logged with its traceback."""
    if isinstance(error, UploadTooLargeError):
        return 413, grpc.StatusCode.RESOURCE_EXHAUSTED.name, str(error)
    code, message = status_for(error, scrub)
    if code == grpc.StatusCode.INTERNAL:
        log_event("http_internal_error", logging.ERROR, exc_info=error,
                  error=f"{type(error).__name__}: {error}")
    return HTTP_STATUS.get(code, 500), code.name, message


def error_response(error: BaseException) -> JSONResponse:
    status, _, message = http_failure(error)
    return JSONResponse({"error": message}, status)


def metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    def tensor(spec: Any) -> dict[str, Any]:
        return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}

    return {"name": meta.name, "versions": list(meta.versions), "platform": meta.platform,
            "inputs": [tensor(s) for s in meta.inputs],
            "outputs": [tensor(s) for s in meta.outputs]}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` (compressed and expanded alike); gzip and deflate
    request bodies are expanded, as Triton does."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLargeError(f"the request body is {int(declared)} bytes, over the "
                                  f"limit of {limit} (--max-message-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadTooLargeError(f"the request body is over the limit of {limit} "
                                      "bytes (--max-message-mb)")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _DECOMPRESS:
        raise InvalidInputError(f"Content-Encoding {encoding!r} is not supported; send "
                                "gzip, deflate or no encoding")
    expander = zlib.decompressobj(_DECOMPRESS[encoding])
    try:
        expanded = expander.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidInputError(f"the {encoding} body does not decompress: {e}") from None
    if len(expanded) > limit or expander.unconsumed_tail:
        raise UploadTooLargeError(f"the request body expands past the limit of {limit} "
                                  "bytes (--max-message-mb)")
    return expanded


class OipHttp:
    """The protocol's routes on a backend."""

    def __init__(self, backend: InferenceBackend, *, max_body_bytes: int, threads: int,
                 metrics: Metrics | None = None):
        self.backend, self.max_body = backend, max_body_bytes
        self.limiter = anyio.CapacityLimiter(threads)
        self.metrics = metrics

    @property
    def routes(self) -> list[BaseRoute]:
        model = "/v2/models/{name}"
        versioned = "/v2/models/{name}/versions/{version}"
        return [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            *(Route(path, self.model_metadata, methods=["GET"]) for path in (model, versioned)),
            *(Route(path + "/ready", self.model_ready, methods=["GET"])
              for path in (model, versioned)),
            *(Route(path + "/infer", self.infer, methods=["POST"])
              for path in (model, versioned)),
        ]

    async def _run(self, method: str, fn: Callable[[], Response]) -> Response:
        """`fn` on a worker thread, its errors as the protocol's error JSON, and counted."""
        started = time.perf_counter()
        try:
            response = await anyio.to_thread.run_sync(fn, limiter=self.limiter)
        except Exception as e:
            response = error_response(e)
        if self.metrics is not None:  # by HTTP status, beside the gRPC methods by code
            self.metrics.observe_rpc(f"http.{method}", str(response.status_code),
                                     time.perf_counter() - started)
        return response

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.backend.server_ready()
        return JSONResponse({"ready": ready}, 200 if ready else NOT_READY)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": server_version(),
                             "extensions": list(EXTENSIONS)})

    async def model_metadata(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version", "")
        return await self._run("ModelMetadata", lambda: JSONResponse(
            metadata_json(self.backend.model_metadata(name, version))))

    async def model_ready(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version", "")

        def check() -> Response:
            ready = self.backend.model_ready(name, version)
            return JSONResponse({"name": name, "ready": ready}, 200 if ready else NOT_READY)

        return await self._run("ModelReady", check)

    async def infer(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version", "")
        try:
            body = await read_body(request, self.max_body)
        except Exception as e:
            return error_response(e)
        header = request.headers.get(tensors.HEADER_LENGTH)

        def run() -> Response:
            parsed = tensors.http_request(name, version, body, header)
            result = self.backend.infer(parsed, Call())
            content, json_length = tensors.http_response(result,
                                                         tensors.binary_outputs(parsed))
            if json_length is None:
                return Response(content, media_type="application/json")
            return Response(content, media_type="application/octet-stream",
                            headers={tensors.HEADER_LENGTH: str(json_length)})

        return await self._run("ModelInfer", run)

class BearerAuth:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`, except the
    open paths (health probes). Compared in constant time."""

    def __init__(self, app: ASGIApp, token: str, open_paths: Iterable[str] = OPEN_PATHS):
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        supplied = b""
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                supplied = value
        if hmac.compare_digest(supplied, self.expected):
            await self.app(scope, receive, send)
            return
        message = ("missing bearer token: send the header 'Authorization: Bearer <token>'"
                   if not supplied else "invalid bearer token")
        response = JSONResponse({"error": message}, 401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return JSONResponse({"error": error.detail}, error.status_code, headers=error.headers)


def build_app(routes: Sequence[BaseRoute], *, token: str | None = None,
              open_paths: Iterable[str] = OPEN_PATHS) -> Starlette:
    """An app of `routes` (OipHttp.routes, and any other pages), every answer JSON, the
    bearer token required outside `open_paths` when `token` is set."""
    app = Starlette(routes=list(routes), exception_handlers={HTTPException: _http_error})
    if token:
        app.add_middleware(BearerAuth, token=token, open_paths=open_paths)
    return app


class HttpServer:
    """uvicorn on a background thread: `start` binds and returns the port, `stop` lets
    requests in progress finish (up to `grace` seconds) and closes."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, tls_cert: Path | None = None,
                 tls_key: Path | None = None, grace_s: float = 10.0):
        import uvicorn

        self.host, self.requested_port = host, port
        self.config = uvicorn.Config(
            app, ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None, log_config=None, access_log=False,
            lifespan="off", timeout_graceful_shutdown=max(1, int(grace_s)))
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None
        self.port = 0

    def _socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as e:
            sock.close()
            raise ServerError(f"cannot listen on {self.host}:{self.requested_port} for HTTP: "
                              f"{e.strerror}; is another server running there? "
                              "(--http-port)") from None
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock

    def start(self, timeout: float = 30.0) -> int:
        sock = self._socket()
        self.port = int(sock.getsockname()[1])
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       name="http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop(0)
                raise ServerError(f"the HTTP server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self.port

    def stop(self, grace: float | None = None) -> None:
        if self.thread is None:
            return
        self.server.should_exit = True
        wait = self.config.timeout_graceful_shutdown if grace is None else grace
        self.thread.join(timeout=(wait or 0) + 5)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout=5)
        self.thread = None
