"""zoo.v1 over HTTP as JSON (zoo_server.web.bridge) and the page's own routes, against an
in-process server: every method reachable with no code of its own, the same answers and
status codes as gRPC, uploads checked like gRPC's, the token, and what the page may serve."""

from __future__ import annotations

import hashlib
import json
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from tests.conftest import ROOT
from tests.serving import leftovers
from zoo.finetuning.hyperparameters import default, field_names
from zoo_api.v1 import finetune_pb2, finetune_pb2_grpc, models_pb2, models_pb2_grpc
from zoo_server.config import ServerConfig
from zoo_server.server import ZOO_SERVICES, ZooServer, create_server
from zoo_server.web import page

TOKEN = "bridge-token"
JSON = {"Content-Type": "application/json"}


class Http:
    def __init__(self, server: ZooServer, token: str | None = None):
        assert server.http_url is not None
        self.url, self.token = server.http_url.rstrip("/"), token

    def send(self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             method: str | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        request = urllib.request.Request(self.url + path, data=body, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def call(self, method: str, request: Any = None, **headers: str) -> tuple[int, Any]:
        status, _, body = self.send(f"/api/v1/{method}", json.dumps(request or {}).encode(),
                                    {**JSON, **headers})
        return status, json.loads(body)

    def upload(self, data: bytes, query: str, content_type: str = "application/octet-stream"
               ) -> tuple[int, Any]:
        status, _, body = self.send(f"/api/v1/FineTuneService/UploadDataset?{query}", data,
                                    {"Content-Type": content_type})
        return status, json.loads(body)


def start(home: Path, **settings: Any) -> ZooServer:
    server, _ = create_server("127.0.0.1:0", home=home,
                              config=ServerConfig(http_port=0, max_jobs=0, **settings))
    return server


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ZooServer]:
    instance = start(tmp_path / "home", max_upload_mb=1)
    try:
        yield instance
    finally:
        instance.stop(0)


def test_every_zoo_v1_method_is_reachable_by_name(server) -> None:
    http = Http(server)
    for service in ZOO_SERVICES:
        for method in service.methods:
            for name in (service.name, service.full_name):
                body = {} if not method.client_streaming else None
                status, _, raw = http.send(f"/api/v1/{name}/{method.name}",
                                           json.dumps(body).encode() if body is not None else b"",
                                           JSON)
                assert b"no method" not in raw, (name, method.name, raw)
                assert status != 500, (name, method.name, raw)
    status, answer = http.call("ModelService/NoSuchMethod")
    assert status == 404 and "ModelService/ListModels" in answer["error"]


def test_answers_are_the_grpc_answers_as_json(server) -> None:
    http = Http(server)
    status, answer = http.call("zoo.v1.ModelService/ListModels", {"pattern": "mobilenet_v2_0*"})
    assert status == 200
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = models_pb2_grpc.ModelServiceStub(channel).ListModels(
            models_pb2.ListModelsRequest(pattern="mobilenet_v2_0*"), timeout=30)
    assert answer == json_format.MessageToDict(reply, preserving_proto_field_name=True,
                                               always_print_fields_with_no_presence=True)
    assert len(answer["models"]) == len(reply.models) > 10
    # lowerCamelCase names and enum numbers are accepted too (protobuf's JSON mapping)
    status, answer = http.call("ModelService/ListModels", {"pattern": "minilm*", "task": 2})
    assert status == 200 and [m["name"] for m in answer["models"]] == ["minilm_l6_v2"]


def test_a_model_card_has_its_files_checksums_and_cache_state(server) -> None:
    status, answer = Http(server).call("ModelService/GetModel",
                                       {"model": {"name": "minilm_l6_v2"}})
    assert status == 200
    model = answer["model"]
    assert model["source"] == "huggingface" and model["cached"] is True
    files = {f["name"]: f for f in model["files"]}
    weights = files["model.safetensors"]
    assert weights["checksum"].startswith("sha256:") and weights["cached"] is True
    assert weights["origin"].startswith("hf://sentence-transformers/all-MiniLM-L6-v2@")
    assert int(model["size_bytes"]) == sum(int(f["size"]) for f in model["files"])
    status, answer = Http(server).call("ModelService/GetModel", {"model": {"name": "resnet50"}})
    resnet = answer["model"]
    assert resnet["source"] == "keras" and resnet["cached"] is False
    assert {f["name"] for f in resnet["files"]} == {"top", "notop"}
    assert all(f["checksum"] and not f["cached"] for f in resnet["files"])


@pytest.mark.parametrize(
    ("method", "body", "headers", "status", "code", "message"),
    [
        ("ModelService/GetModel", {"model": {"name": "resnet5"}}, {}, 404, "NOT_FOUND",
         "unknown model 'resnet5'"),
        ("ModelService/GetModel", {"modell": {}}, {}, 400, "INVALID_ARGUMENT", "no field named"),
        ("ModelService/ListModels", {"pattern": "x" * 300}, {}, 400, "INVALID_ARGUMENT",
         "pattern"),
        ("FineTuneService/GetJob", {"job_id": "job_0123456789abcdef"}, {}, 404, "NOT_FOUND",
         "no job"),
        ("ModelService/ListModels", {}, {"Origin": "https://elsewhere.example"}, 403,
         "PERMISSION_DENIED", "cross-origin"),
        ("ModelService/ListModels", {}, {"Content-Type": "text/plain"}, 415, "INVALID_ARGUMENT",
         "application/json"),
        ("ModelService/ListModels", {}, {"Content-Type": "application/x-www-form-urlencoded"},
         415, "INVALID_ARGUMENT", "application/json"),
    ],
)
def test_errors_have_the_tables_status_and_code(server, method, body, headers, status, code,
                                                message) -> None:
    found, answer = Http(server).call(method, body, **headers)
    assert (found, answer["code"]) == (status, code)
    assert message in answer["error"]


def test_a_body_that_is_not_json_is_a_bad_request(server) -> None:
    status, _, body = Http(server).send("/api/v1/ModelService/ListModels", b"{nope", JSON)
    assert status == 400 and "not JSON" in json.loads(body)["error"]


def csv_rows(n: int) -> bytes:
    return b"text,label\n" + b"".join(f"text {i},{'ab'[i % 2]}\n".encode() for i in range(n))


def test_uploads_are_checked_like_grpc_uploads_and_leave_nothing_when_refused(server) -> None:
    http = Http(server)
    data = csv_rows(40)
    digest = hashlib.sha256(data).hexdigest()
    status, answer = http.upload(data, f"format=TEXT_CSV&sha256={digest}&name=reviews.csv")
    assert status == 200, answer
    assert answer["examples"] == 40 and answer["classes"] == ["a", "b"]
    assert int(answer["size"]) == len(data)  # size came from Content-Length
    kept = leftovers(server.home)

    refusals = [
        (f"format=TEXT_CSV&sha256={'0' * 64}", data, 400, "sha256"),
        (f"format=TEXT_CSV&sha256={digest}&size={len(data) + 5}", data, 400, "ended after"),
        (f"format=TEXT_CSV&sha256={digest}&size=3", data, 400, "more bytes than header.size"),
        (f"format=NOPE&sha256={digest}", data, 400, "DatasetHeader"),
        (f"format=IMAGE_ZIP&sha256={hashlib.sha256(b'junk').hexdigest()}", b"junk", 400,
         "not a readable zip archive"),
    ]
    big = csv_rows(100_000)  # 1.3 MB: over --max-upload-mb 1
    refusals.append((f"format=TEXT_CSV&sha256={hashlib.sha256(big).hexdigest()}", big, 413,
                     "--max-upload-mb"))
    for query, body, expected, message in refusals:
        status, answer = http.upload(body, query)
        assert status == expected and message in answer["error"], (query[:40], answer)
        assert leftovers(server.home) == kept, "a refused upload left files behind"
    status, answer = http.upload(data, f"format=TEXT_CSV&sha256={digest}", "text/plain")
    assert status == 415  # what a cross-site form could send without asking


def test_server_streams_are_ndjson_or_server_sent_events(server) -> None:
    http = Http(server)
    request = json.dumps({"model": {"name": "minilm_l6_v2"}}).encode()
    status, headers, body = http.send("/api/v1/ModelService/FetchModel", request, JSON)
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines[-1]["done"] is True
    assert not lines[-1]["path"].startswith("/"), "a server path reached the client"
    status, headers, body = http.send("/api/v1/ModelService/FetchModel", request,
                                      {**JSON, "Accept": "text/event-stream"})
    assert headers["content-type"].startswith("text/event-stream")
    event, data = body.decode().strip().split("\n", 1)
    assert event == "event: message" and json.loads(data.removeprefix("data: "))["done"]
    # A failure before the first message is an ordinary error answer.
    status, answer = http.call("ModelService/FetchModel", {"model": {"name": "nope"}})
    assert status == 404 and answer["code"] == "NOT_FOUND"


def test_the_page_loads_without_the_token_and_everything_else_needs_it(tmp_path) -> None:
    server = start(tmp_path / "home", token=TOKEN)
    try:
        anonymous, allowed = Http(server), Http(server, TOKEN)
        for path in page.public_paths():
            status, headers, _ = anonymous.send(path)
            assert status == 200, path
            assert "script-src 'self'" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"
        assert anonymous.send("/static/%2e%2e/bridge.py")[0] == 401  # not one of the page's
        status, _, body = allowed.send("/static/%2e%2e/bridge.py")  # bridge.py is next door
        assert status == 404 and b"import" not in body
        assert anonymous.send("/v2/health/live")[0] == 200
        for path in (page.SETTINGS_PATH, "/v2/models/minilm_l6_v2"):
            assert anonymous.send(path)[0] == 401, path
            assert allowed.send(path)[0] == 200, path
        status, answer = anonymous.call("ModelService/ListModels")
        assert status == 401 and "bearer token" in answer["error"]
        assert allowed.call("ModelService/ListModels")[0] == 200
        assert Http(server, "wrong").call("ModelService/ListModels")[0] == 401
    finally:
        server.stop(0)


def test_the_settings_derive_from_the_one_schema(server) -> None:
    status, _, body = Http(server).send(page.SETTINGS_PATH)
    settings = json.loads(body)
    assert status == 200
    assert [r["name"] for r in settings["hyperparameters"]] == field_names()
    assert all(r["default"] == default(r["name"]) for r in settings["hyperparameters"])
    assert {r["name"] for r in settings["hyperparameters"] if r["main"]} >= {"epochs",
                                                                               "learning_rate"}
    names = [f["name"] for f in settings["dataset_formats"]]
    assert names == [n for n in finetune_pb2.DatasetFormat.keys() if not n.endswith("UNSPECIFIED")]
    assert settings["max_upload_bytes"] == 1 << 20


def test_the_page_ships_as_package_data() -> None:
    """Every static file matches pyproject's package-data, so an installed server has it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["zoo_server"]
    root = ROOT / "server" / "zoo_server"
    files = [p.relative_to(root).as_posix() for p in page.STATIC.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch(f, p) for p in patterns) for f in files), files
    assert (page.STATIC / "index.html").is_file() and (page.STATIC / "sample.jpg").is_file()


def test_a_stream_whose_client_goes_away_ends_like_a_cancelled_call() -> None:
    """WatchJob over HTTP holds a worker thread while it waits for events; when the client
    disconnects, the servicer must see is_active() turn false and return."""
    import socket
    import threading
    import time

    from zoo_server.oip.http import HttpServer, build_app
    from zoo_server.web.bridge import Bridge

    ended = threading.Event()

    class Watching(finetune_pb2_grpc.FineTuneServiceServicer):
        def WatchJob(self, request: Any, context: Any) -> Iterator[Any]:  # noqa: N802
            try:
                yield finetune_pb2.JobEvent(job_id=request.job_id, message="queued")
                while context.is_active():
                    time.sleep(0.02)
            finally:
                ended.set()

    service = finetune_pb2.DESCRIPTOR.services_by_name["FineTuneService"]
    bridge = Bridge([(service, Watching())], max_body_bytes=1 << 20, threads=4)
    http = HttpServer(build_app(bridge.routes), "127.0.0.1", 0)
    port = http.start()
    try:
        body = b'{"job_id": "job_0123456789abcdef"}'
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/v1/FineTuneService/WatchJob HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            received = b""
            while b"queued" not in received:
                received += sock.recv(4096)
            assert b"200 OK" in received and not ended.is_set()
        assert ended.wait(10), "the servicer went on after its client left"
    finally:
        http.stop(1)
