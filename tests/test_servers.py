"""The local test servers do what the download tests rely on: files, ranges, faults, Hub API."""

from __future__ import annotations

import hashlib
import http.client
import random
import threading
import time
from pathlib import Path

import pytest
import requests
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.servers.base import Fault, ServerProcess
from tests.servers.hub import HubServer
from tests.servers.static import StaticServer

DATA = random.Random(0).randbytes(1 << 20)
KEY = "weights/model.h5"


def request(server, path: str, method: str = "GET", timeout: float = 5, **headers: str):
    """Send one request on a fresh connection; the caller reads (or fails to read) the body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    conn.request(method, path, headers=headers)
    return conn.getresponse()


@pytest.fixture
def static(tmp_path: Path):
    root = tmp_path / "root"
    (root / "weights").mkdir(parents=True)
    (root / KEY).write_bytes(DATA)
    (tmp_path / "secret.txt").write_text("outside the root")
    with StaticServer(root) as server:
        yield server


# --- static server ------------------------------------------------------------------------


def test_static_serves_files_with_length_and_etag(static: StaticServer):
    response = request(static, "/" + KEY)
    assert (response.status, response.read()) == (200, DATA)
    assert response.getheader("Content-Length") == str(len(DATA))
    assert response.getheader("Accept-Ranges") == "bytes"
    etag = response.getheader("ETag")
    assert etag and etag.startswith('"')

    head = request(static, "/" + KEY, method="HEAD")
    assert (head.status, head.read()) == (200, b"")
    assert (head.getheader("Content-Length"), head.getheader("ETag")) == (str(len(DATA)), etag)

    for missing in (
        "/weights/nope.h5",
        "/weights",
        "/../secret.txt",
        "/weights/%2E%2E/../secret.txt",
    ):
        assert request(static, missing).status == 404, missing

    assert static.url_for(KEY) == f"{static.url}/{KEY}"
    assert [(r.method, r.path, r.status) for r in static.log(key=KEY)] == [
        ("GET", "/" + KEY, 200),
        ("HEAD", "/" + KEY, 200),
    ]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=10-", 10, len(DATA)),
        ("bytes=10-19", 10, 20),
        ("bytes=-5", len(DATA) - 5, len(DATA)),
        ("bytes=10-99999999", 10, len(DATA)),
    ],
)
def test_static_range_requests(static: StaticServer, header: str, start: int, end: int):
    response = request(static, "/" + KEY, Range=header)
    assert (response.status, response.read()) == (206, DATA[start:end])
    assert response.getheader("Content-Range") == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert static.log()[-1].range == header


def test_static_unsatisfiable_and_ignored_ranges(static: StaticServer):
    response = request(static, "/" + KEY, Range=f"bytes={len(DATA)}-")
    response.read()
    assert response.status == 416
    assert response.getheader("Content-Range") == f"bytes */{len(DATA)}"
    for ignored in ("items=1-2", "bytes=0-1,5-6", "bytes=9-3"):
        response = request(static, "/" + KEY, Range=ignored)
        assert (response.status, response.read()) == (200, DATA), ignored


def test_truncate_every_time_or_first_n_times(static: StaticServer):
    static.set_fault(KEY, Fault.truncate(after=1000))
    for _ in range(2):
        response = request(static, "/" + KEY)
        assert response.getheader("Content-Length") == str(len(DATA))
        with pytest.raises(http.client.IncompleteRead) as error:
            response.read()
        assert error.value.partial == DATA[:1000]

    static.set_fault(KEY, Fault.truncate(after=1000, times=1))
    with pytest.raises(http.client.IncompleteRead):
        request(static, "/" + KEY).read()
    assert request(static, "/" + KEY).read() == DATA
    assert [r.fault for r in static.log("GET", KEY)] == ["truncate"] * 3 + [None]


def test_reset_mid_body_then_resume_with_range(static: StaticServer):
    static.set_fault(KEY, Fault.reset(after=200_000))
    response = request(static, "/" + KEY)
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        response.read()

    resumed = request(static, "/" + KEY, Range="bytes=200000-")
    assert (resumed.status, resumed.read()) == (206, DATA[200_000:])
    log = static.log("GET", KEY)
    assert [(r.fault, r.range) for r in log] == [("reset", None), (None, "bytes=200000-")]


def test_status_fault_first_n_gets_only(static: StaticServer):
    static.set_fault(KEY, Fault.status(503, times=2))
    assert request(static, "/" + KEY, method="HEAD").status == 200  # HEAD does not match
    assert [request(static, "/" + KEY).status for _ in range(3)] == [503, 503, 200]
    head_too = Fault("status", times=1, code=500, methods=("HEAD",))
    static.set_fault(KEY, head_too)
    assert request(static, "/" + KEY, method="HEAD").status == 500


def test_faults_apply_in_order(static: StaticServer):
    static.set_fault(KEY, Fault.status(500), Fault.truncate(after=10, times=1))
    assert request(static, "/" + KEY).status == 500
    with pytest.raises(http.client.IncompleteRead):
        request(static, "/" + KEY).read()
    assert request(static, "/" + KEY).read() == DATA
    static.set_fault(KEY)  # no faults: cleared
    static.set_fault("other.bin", Fault.status(500))
    static.clear_faults()
    assert [r.fault for r in static.log()] == ["status", "truncate", None]


def test_stall_trips_client_timeouts_without_blocking_stop(tmp_path: Path):
    (tmp_path / "a.bin").write_bytes(DATA)
    server = StaticServer(tmp_path).start()
    server.set_fault("a.bin", Fault.stall(0.2, after=100, times=1), Fault.stall(60, after=100))
    assert request(server, "/a.bin").read() == DATA  # a short stall is only slow

    response = request(server, "/a.bin", timeout=0.3)
    assert response.status == 200
    assert response.read(100) == DATA[:100]
    with pytest.raises(TimeoutError):
        response.read()
    began = time.monotonic()
    server.stop()
    assert time.monotonic() - began < 2


def test_corrupt_serves_inverted_bytes(static: StaticServer):
    static.set_fault(KEY, Fault.corrupt(times=1))
    body = request(static, "/" + KEY).read()
    assert len(body) == len(DATA) and body != DATA
    assert bytes(b ^ 0xFF for b in body[:64]) == DATA[:64]
    assert request(static, "/" + KEY).read() == DATA


def test_ignore_range_answers_whole_file(static: StaticServer):
    static.set_fault(KEY, Fault.ignore_range())
    response = request(static, "/" + KEY, Range="bytes=100-")
    assert (response.status, response.getheader("Content-Range"), response.read()) == (
        200,
        None,
        DATA,
    )


def test_concurrent_clients_and_keep_alive(static: StaticServer):
    bodies: list[bytes] = []

    def download() -> None:
        with requests.Session() as session:  # two requests on one kept-alive connection
            for _ in range(2):
                bodies.append(session.get(static.url_for(KEY), timeout=5).content)

    threads = [threading.Thread(target=download) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bodies == [DATA] * 16
    assert len(static.log("GET", KEY)) == 16


def test_static_server_out_of_process(tmp_path: Path):
    (tmp_path / "a.bin").write_bytes(DATA)
    with ServerProcess("static", "--root", str(tmp_path)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert requests.get(f"{server.url}/a.bin", timeout=5).content == DATA
        server.set_fault("a.bin", Fault.status(503))
        assert requests.get(f"{server.url}/a.bin", timeout=5).status_code == 503
        assert [(r.status, r.fault) for r in server.log("GET", "a.bin")] == [
            (200, None),
            (503, "status"),
        ]
        server.clear_log()
        assert server.log() == []


# --- Hub server ---------------------------------------------------------------------------

REPO = "zoo-test/tiny"
LARGE = random.Random(1).randbytes(3 * 1000 * 1000)
FILES = {"config.json": b'{"hidden_size": 8}', "sub/vocab.txt": b"[PAD]\n[UNK]\n"}
SHA = "0123456789abcdef0123456789abcdef01234567"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(autouse=True)
def hub_env(monkeypatch: pytest.MonkeyPatch):
    """huggingface_hub must go online, and only with the tokens a test passes."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hub(tmp_path: Path):
    large = tmp_path / "model.safetensors"
    large.write_bytes(LARGE)
    with HubServer() as server:
        server.add_repo(REPO, {**FILES, "model.safetensors": large}, revision_sha=SHA)
        yield server


def test_hf_hub_download_small_and_lfs_files(hub: HubServer, tmp_path: Path):
    cache = tmp_path / "cache"
    for revision in ("main", SHA):
        small = hf_hub_download(
            REPO, "config.json", revision=revision, cache_dir=cache, endpoint=hub.url
        )
        assert Path(small).read_bytes() == FILES["config.json"]
    large = hf_hub_download(REPO, "model.safetensors", cache_dir=cache, endpoint=hub.url)
    assert Path(large).read_bytes() == LARGE
    # huggingface_hub names blobs after the ETag: git sha1 for plain files, sha256 for LFS.
    assert Path(small).resolve().name == git_sha1(FILES["config.json"])
    assert Path(large).resolve().name == hashlib.sha256(LARGE).hexdigest()
    assert [r.method for r in hub.log(key=f"{REPO}/model.safetensors")] == ["HEAD", "GET"]


def test_snapshot_download_and_listings(hub: HubServer, tmp_path: Path):
    folder = Path(snapshot_download(REPO, cache_dir=tmp_path / "cache", endpoint=hub.url))
    assert folder.name == SHA
    for name, data in {**FILES, "model.safetensors": LARGE}.items():
        assert (folder / name).read_bytes() == data

    api = HfApi(endpoint=hub.url)
    assert sorted(api.list_repo_files(REPO)) == [
        "config.json",
        "model.safetensors",
        "sub/vocab.txt",
    ]
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(REPO)}
    assert top == {"sub": "RepoFolder", "config.json": "RepoFile", "model.safetensors": "RepoFile"}
    assert [e.path for e in api.list_repo_tree(REPO, "sub", revision=SHA)] == ["sub/vocab.txt"]
    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == SHA
    lfs = {s.rfilename: s.lfs for s in info.siblings or []}
    assert lfs["config.json"] is None
    assert lfs["model.safetensors"].sha256 == hashlib.sha256(LARGE).hexdigest()


def test_missing_file_repo_and_revision_raise_hub_errors(hub: HubServer, tmp_path: Path):
    cache = tmp_path / "cache"
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "nope.bin", cache_dir=cache, endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("zoo-test/nope", "config.json", cache_dir=cache, endpoint=hub.url)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="v9", cache_dir=cache, endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url).model_info("zoo-test/nope")


def test_private_repo_needs_its_token(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    hub.add_repo("zoo-test/private", FILES, token="s3cret")
    download = dict(repo_id="zoo-test/private", filename="config.json", endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(**download, cache_dir=tmp_path / "a", token=False)
    with pytest.raises(HfHubHTTPError) as error:
        hf_hub_download(**download, cache_dir=tmp_path / "b", token="wrong")
    assert error.value.response.status_code == 401

    path = hf_hub_download(**download, cache_dir=tmp_path / "c", token="s3cret")
    assert Path(path).read_bytes() == FILES["config.json"]
    monkeypatch.setenv("HF_TOKEN", "s3cret")
    assert (
        Path(hf_hub_download(**download, cache_dir=tmp_path / "d")).read_bytes()
        == FILES["config.json"]
    )
    assert hub.log()[-1].headers.get("authorization") == "Bearer s3cret"


def test_gated_repo_raises_gated_error(hub: HubServer, tmp_path: Path):
    hub.add_repo("zoo-test/gated", FILES, token="s3cret", gated=True)
    for token in (False, "wrong"):
        with pytest.raises(GatedRepoError):
            hf_hub_download(
                "zoo-test/gated", "config.json", cache_dir=tmp_path, endpoint=hub.url, token=token
            )
    assert [r.status for r in hub.log("HEAD")] == [401, 403]


def test_hub_faults_hit_resolve_downloads(hub: HubServer, tmp_path: Path):
    key = f"{REPO}/model.safetensors"
    hub.set_fault(key, Fault.truncate(after=1_000_000, times=1))
    path = hf_hub_download(
        REPO, "model.safetensors", cache_dir=tmp_path / "cache", endpoint=hub.url
    )
    assert Path(path).read_bytes() == LARGE  # huggingface_hub retried the cut download
    # It resumes only from whole 10 MiB chunks (DOWNLOAD_CHUNK_SIZE): here it starts over.
    assert [(r.fault, r.range, r.status) for r in hub.log("GET", key)] == [
        ("truncate", None, 200),
        (None, None, 200),
    ]


def test_hub_server_out_of_process(tmp_path: Path):
    repo_dir = tmp_path / "repo"
    (repo_dir / "sub").mkdir(parents=True)
    for name, data in FILES.items():
        (repo_dir / name).write_bytes(data)
    argv = ("--repo", f"{REPO}={repo_dir}", "--token", f"{REPO}=s3cret")
    with ServerProcess("hub", *argv) as server:
        folder = snapshot_download(
            REPO, cache_dir=tmp_path / "cache", endpoint=server.url, token="s3cret"
        )
        assert (Path(folder) / "sub/vocab.txt").read_bytes() == FILES["sub/vocab.txt"]
        assert len(server.log("GET", f"{REPO}/config.json")) == 1
