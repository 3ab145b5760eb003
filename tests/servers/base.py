"""What the static and Hub servers share: HTTP plumbing, byte serving, faults, the request log.

A server is a `LocalServer` subclass (the state tests touch: configuration, faults, log)
plus a `BaseHandler` subclass that routes requests. File bodies always go through
`BaseHandler.send_blob`, so Range support and fault injection exist once for both servers.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any, BinaryIO, ClassVar, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

CHUNK_SIZE = 1 << 20  # big writes keep the server out of the way of throughput benchmarks
CONTROL_PREFIX = "/__control__/"
FAULT_KINDS = ("truncate", "reset", "status", "stall", "corrupt", "ignore_range")
_FLIP = bytes(255 - i for i in range(256))
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

_S = TypeVar("_S", bound="LocalServer")


@dataclass(frozen=True)
class Fault:
    """A misbehaviour injected into the responses for one file.

    Build one with the classmethods below, or directly for other combinations.
    `times`: how many matching requests it spoils (None: every one). `methods`: which
    requests match; GET only by default, so a client's HEAD probe does not use up a fault
    meant for its download.
    """

    kind: str
    times: int | None = None
    after: int = 0  # body bytes sent before truncate / reset / stall strike
    code: int = 503  # status to answer, for "status"
    seconds: float = 0.0  # how long to go quiet, for "stall"
    methods: tuple[str, ...] = ("GET",)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        # Normalise lists (faults arrive as JSON over the control API) and case.
        object.__setattr__(self, "methods", tuple(m.upper() for m in self.methods))

    @classmethod
    def truncate(cls, after: int, times: int | None = None) -> Fault:
        """Promise the full Content-Length, then close cleanly (FIN) after `after` bytes."""
        return cls("truncate", times, after=after)

    @classmethod
    def reset(cls, after: int, times: int | None = 1) -> Fault:
        """Send `after` bytes, then reset the connection (TCP RST); later requests succeed."""
        return cls("reset", times, after=after)

    @classmethod
    def status(cls, code: int, times: int | None = 1) -> Fault:
        """Answer `code` instead of the file; later requests succeed."""
        return cls("status", times, code=code)

    @classmethod
    def stall(cls, seconds: float, after: int = 0, times: int | None = None) -> Fault:
        """Send the headers and `after` bytes, go quiet for `seconds`, then send the rest."""
        return cls("stall", times, after=after, seconds=seconds)

    @classmethod
    def corrupt(cls, times: int | None = None) -> Fault:
        """Serve every byte inverted: the right size, the wrong checksum."""
        return cls("corrupt", times)

    @classmethod
    def ignore_range(cls, times: int | None = None) -> Fault:
        """Answer 200 with the whole file even when a Range was asked for."""
        return cls("ignore_range", times)


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, logged when its status line went out."""

    method: str
    path: str  # percent-decoded URL path
    query: str
    range: str | None  # the Range request header
    status: int
    key: str | None  # the file key (as in set_fault) for file downloads, else None
    fault: str | None  # kind of the fault this request suffered
    headers: dict[str, str]


def filter_records(
    records: Iterable[RequestRecord], method: str | None = None, key: str | None = None
) -> list[RequestRecord]:
    return [
        r
        for r in records
        if (method is None or r.method == method.upper()) and (key is None or r.key == key)
    ]


@dataclass(frozen=True)
class Blob:
    """File content to serve, from disk or from memory."""

    source: Path | bytes

    @property
    def size(self) -> int:
        if isinstance(self.source, bytes):
            return len(self.source)
        return self.source.stat().st_size

    def open(self) -> BinaryIO:
        if isinstance(self.source, bytes):
            return io.BytesIO(self.source)
        return self.source.open("rb")


class RangeNotSatisfiable(Exception):
    """The Range header asks only for bytes past the end of the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`(start, end)`, end exclusive, for a single `bytes=` range; None to serve the whole file.

    Multi-range and malformed headers are ignored, as RFC 9110 allows.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # suffix range: the last N bytes
        start, end = max(size - int(last), 0), size
    else:
        start = int(first)
        if last and int(last) < start:
            return None
        end = min(int(last) + 1, size) if last else size
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, end


class _HTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that tracks its connections so stop() can cut them."""

    daemon_threads = True
    request_queue_size = 128  # many clients connecting at once must not be refused

    def __init__(self, address: tuple[str, int], handler: type[BaseHandler], app: LocalServer):
        self.app = app
        self._conns: set[socket.socket] = set()
        self._aborted: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(): a reverse DNS lookup that can hang offline.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def abort(self, conn: socket.socket) -> None:
        """Make closing `conn` send a TCP RST rather than a FIN."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._conns_lock:
            self._aborted.add(conn)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
            aborted = request in self._aborted
            self._aborted.discard(request)
        if aborted:
            self.close_request(request)  # shutdown(SHUT_WR) would send a FIN before the RST
        else:
            super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Wake every handler blocked on a socket, so none outlives stop()."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # its handler closed it meanwhile

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up, and anything during stop(), are expected: no traceback.
        if self.app.stopping.is_set() or isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class _ArmedFault:
    fault: Fault
    left: int | None


class LocalServer:
    """An HTTP server on 127.0.0.1 served from a background thread.

    Use `with Server(...) as server:` or start()/stop(). Port 0 (the default) picks a free
    port; `url` is the base URL once started. Holds what tests change while it runs: faults
    per file key, and the request log.
    """

    handler_class: ClassVar[type[BaseHandler]]

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._faults: dict[str, list[_ArmedFault]] = {}
        self._log: list[RequestRecord] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    def start(self: _S) -> _S:
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self.stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self.handler_class, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake stalled responses and cut open connections."""
        if self._httpd is None or self._thread is None:
            return
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.cut_connections()
        self._httpd.server_close()
        self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_fault(self, key: str, *faults: Fault) -> None:
        """Spoil requests for the file `key` (its path; "org/name/path" on the Hub server).

        Faults are tried in order and each takes its first `times` matching requests:
        `set_fault(k, Fault.status(503), Fault.reset(after=10))` answers 503, then resets,
        then serves normally. Replaces earlier faults for `key`; none clears them.
        """
        with self._lock:
            self._faults[key.lstrip("/")] = [_ArmedFault(f, f.times) for f in faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, key: str, method: str) -> Fault | None:
        """The fault the next `method` request for `key` suffers, if any, using one of its times."""
        with self._lock:
            for armed in self._faults.get(key, ()):
                if method not in armed.fault.methods or armed.left == 0:
                    continue
                if armed.left is not None:
                    armed.left -= 1
                return armed.fault
        return None

    def log(self, method: str | None = None, key: str | None = None) -> list[RequestRecord]:
        """Requests answered so far, oldest first; optionally only one method and/or file key."""
        with self._lock:
            return filter_records(self._log, method, key)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)


class BaseHandler(BaseHTTPRequestHandler):
    """Request plumbing for both servers; subclasses route GET/HEAD in `route()`."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real CDNs and the Hub do
    server: _HTTPServer
    # Per-request state, reset in parse_request (one handler serves a whole keep-alive connection).
    _url: SplitResult | None = None
    _key: str | None = None
    _fault: Fault | None = None

    @property
    def app(self) -> LocalServer:
        return self.server.app

    def route(self, path: str, query: str) -> None:
        """Answer a GET or HEAD for the still percent-encoded `path`."""
        raise NotImplementedError

    def parse_request(self) -> bool:
        self._url = self._key = self._fault = None
        return super().parse_request()

    def _dispatch(self) -> None:
        url = self._url = urlsplit(self.path)
        if url.path.startswith(CONTROL_PREFIX):
            self._control(url.path[len(CONTROL_PREFIX) :])
        elif self.command in ("GET", "HEAD"):
            self.route(url.path, url.query)
        else:
            self.send_error(405)

    do_GET = do_HEAD = do_POST = do_DELETE = _dispatch

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Called by send_response: log the request as soon as its status is known."""
        url = self._url
        if url is None or url.path.startswith(CONTROL_PREFIX):
            return
        self.app.record(
            RequestRecord(
                method=self.command,
                path=unquote(url.path),
                query=url.query,
                range=self.headers.get("Range"),
                status=int(code),
                key=self._key,
                fault=self._fault.kind if self._fault else None,
                headers=dict(self.headers),
            )
        )

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request log replaces http.server's stderr chatter."""

    def send_json(
        self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_blob(self, key: str, blob: Blob, headers: Mapping[str, str] | None = None) -> None:
        """Serve `blob` (GET or HEAD), honouring Range and whatever fault is set for `key`."""
        self._key = key
        fault = self._fault = self.app.take_fault(key, self.command)
        if fault is not None and fault.kind == "status":
            self.send_json({"error": f"injected status {fault.code}"}, fault.code)
            return
        size = blob.size
        try:
            span = None
            if fault is None or fault.kind != "ignore_range":
                span = parse_range(self.headers.get("Range"), size)
        except RangeNotSatisfiable:
            self.send_json(
                {"error": "range not satisfiable"}, 416, {"Content-Range": f"bytes */{size}"}
            )
            return
        start, end = span or (0, size)
        self.send_response(206 if span else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "GET":
            with blob.open() as f:
                self._send_body(f, start, end, fault)

    def _send_body(self, f: BinaryIO, start: int, end: int, fault: Fault | None) -> None:
        if fault is None or fault.kind == "ignore_range":
            if end > start:
                self.connection.sendfile(f, start, end - start)  # zero-copy for files on disk
            return
        if fault.kind == "corrupt":
            self._copy(f, start, end, flip=True)
            return
        cut = min(start + fault.after, end)
        self._copy(f, start, cut)
        if fault.kind == "stall" and not self.app.stopping.wait(fault.seconds):
            self._copy(f, cut, end)
            return
        if fault.kind == "reset":
            self.server.abort(self.connection)
        self.close_connection = True  # truncate, reset, or a stall cut short by stop()

    def _copy(self, f: BinaryIO, start: int, end: int, flip: bool = False) -> None:
        f.seek(start)
        while start < end:
            chunk = f.read(min(CHUNK_SIZE, end - start))
            if not chunk:
                break
            self.wfile.write(chunk.translate(_FLIP) if flip else chunk)
            start += len(chunk)

    def _control(self, op: str) -> None:
        """Faults and the log over HTTP, for servers run out of process (see ServerProcess)."""
        match self.command, op:
            case "GET", "log":
                self.send_json([asdict(r) for r in self.app.log()])
            case "DELETE", "log":
                self.app.clear_log()
                self.send_json({})
            case "POST", "faults":
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.app.set_fault(body["key"], *(Fault(**f) for f in body["faults"]))
                self.send_json({})
            case "DELETE", "faults":
                self.app.clear_faults()
                self.send_json({})
            case _:
                self.send_error(404)


def cli_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    return parser


def serve_until_signalled(server: LocalServer) -> None:
    """CLI main loop: print the base URL as the first stdout line, serve until SIGTERM/SIGINT."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with server:
        print(server.url, flush=True)
        while not done.wait(0.5):
            pass


class ServerProcess:
    """A server run as `python -m tests.servers.<name> ARGS --port 0` in a child process.

    For tests that keep the server off their own process (benchmarks, GIL-free serving).
    Offers LocalServer's fault and log methods, over the server's control endpoints.
    """

    def __init__(self, name: str, *args: str) -> None:
        package = __package__ or "tests.servers"  # "servers" when pytest put tests/ on sys.path
        self.argv = [sys.executable, "-m", f"{package}.{name}", *args, "--port", "0"]
        self._import_root = Path(__file__).resolve().parents[package.count(".") + 1]
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> ServerProcess:
        pythonpath = [str(self._import_root), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p)}
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True, env=env)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"{' '.join(self.argv)} did not print its URL (got {line!r})")
        self.url = line
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, method: str, op: str, payload: object = None) -> Any:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            body = None if payload is None else json.dumps(payload)
            conn.request(method, CONTROL_PREFIX + op, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"control {method} {op}: HTTP {response.status}")
            return json.load(response)
        finally:
            conn.close()

    def set_fault(self, key: str, *faults: Fault) -> None:
        self._call("POST", "faults", {"key": key, "faults": [asdict(f) for f in faults]})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def log(self, method: str | None = None, key: str | None = None) -> list[RequestRecord]:
        return filter_records((RequestRecord(**r) for r in self._call("GET", "log")), method, key)

    def clear_log(self) -> None:
        self._call("DELETE", "log")
