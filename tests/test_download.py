"""The verified downloader against a real local HTTP server, with faults injected.

After every fault: either a valid file at the final cache path, or the right error
and no file there at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import zoo
from tests.conftest import PYTHONPATH
from tests.keras_weights import origin_path, write_mirror
from tests.servers.static import Fault, StaticServer
from zoo.hub import cache
from zoo.hub.manifest import load_manifest

MODEL = "mobilenet_v2_035_96"
SIZE = 3 * 1024 * 1024 + 123


@pytest.fixture()
def payload() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture()
def entry_url() -> str:
    url = load_manifest().model(MODEL).files["top"].origin
    assert url is not None
    return url


@pytest.fixture()
def mirror(tmp_path: Path, payload: bytes, entry_url: str, monkeypatch: pytest.MonkeyPatch):
    """A static server holding MODEL's top file, a manifest pinning its md5, and the env."""
    root = tmp_path / "storage"
    manifest = write_mirror(root, {entry_url: payload}, tmp_path / "manifest.json")
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))
    with StaticServer(root) as server:
        monkeypatch.setenv("ZOO_KERAS_MIRROR", server.url + "/")
        yield server


def final_path() -> Path:
    return cache.keras_path(load_manifest().model(MODEL).files["top"])


def assert_no_final_file() -> None:
    assert not final_path().exists()


def test_fetch_streams_verifies_and_places_atomically(mirror, payload, entry_url) -> None:
    path = zoo.fetch_weights(MODEL)
    assert path == final_path() and path.read_bytes() == payload
    assert not path.with_name(path.name + ".incomplete").exists()
    gets = mirror.log("GET")
    assert len(gets) == 1 and gets[0].path == "/" + origin_path(entry_url)
    # A hit is re-verified and served without touching the network.
    assert zoo.fetch_weights(MODEL) == path
    assert len(mirror.log("GET")) == 1


def test_cached_file_that_rots_is_fetched_again(mirror, payload) -> None:
    path = zoo.fetch_weights(MODEL)
    path.write_bytes(b"bit rot" + payload[7:])
    assert zoo.fetch_weights(MODEL).read_bytes() == payload
    assert len(mirror.log("GET")) == 2


def test_truncated_body_is_an_error_and_leaves_no_file(mirror, entry_url, monkeypatch) -> None:
    monkeypatch.setenv("ZOO_MAX_RETRIES", "2")
    mirror.set_fault(origin_path(entry_url), Fault.truncate(after=1000))
    with pytest.raises(zoo.NetworkError, match="gave up after 3 attempts"):
        zoo.fetch_weights(MODEL)
    assert_no_final_file()


def test_wrong_checksum_is_rejected_and_discarded(mirror, entry_url) -> None:
    mirror.set_fault(origin_path(entry_url), Fault.corrupt())
    with pytest.raises(zoo.ChecksumMismatchError, match="does not match the manifest"):
        zoo.fetch_weights(MODEL)
    assert_no_final_file()
    assert not list(final_path().parent.glob("*.incomplete"))


def test_body_cut_short_once_resumes_with_range(mirror, payload, entry_url) -> None:
    mirror.set_fault(origin_path(entry_url), Fault.truncate(after=1_000_000, times=1))
    assert zoo.fetch_weights(MODEL).read_bytes() == payload
    assert [r.range for r in mirror.log("GET")] == [None, "bytes=1000000-"]


def test_connection_reset_mid_body_then_resume(mirror, payload, entry_url) -> None:
    mirror.set_fault(origin_path(entry_url), Fault.reset(after=1_000_000, times=1))
    assert zoo.fetch_weights(MODEL).read_bytes() == payload
    gets = mirror.log("GET")
    assert len(gets) == 2 and gets[0].fault == "reset"
    # A reset may discard bytes still in the socket buffer; resume from what reached disk.
    assert gets[1].range is None or int(gets[1].range[6:-1]) <= 1_000_000


def test_server_ignoring_range_restarts_cleanly(mirror, payload, entry_url) -> None:
    key = origin_path(entry_url)
    mirror.set_fault(key, Fault.reset(after=500_000, times=1), Fault.ignore_range(times=1))
    assert zoo.fetch_weights(MODEL).read_bytes() == payload


def test_404_is_not_found(mirror, entry_url) -> None:
    mirror.set_fault(origin_path(entry_url), Fault.status(404, times=None))
    with pytest.raises(zoo.WeightsNotFoundError, match="404"):
        zoo.fetch_weights(MODEL)
    assert_no_final_file()


def test_503_then_success_is_retried(mirror, payload, entry_url) -> None:
    mirror.set_fault(origin_path(entry_url), Fault.status(503, times=2))
    assert zoo.fetch_weights(MODEL).read_bytes() == payload
    assert [r.status for r in mirror.log("GET")] == [503, 503, 200]


def test_stalled_server_times_out(mirror, entry_url, monkeypatch) -> None:
    monkeypatch.setenv("ZOO_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("ZOO_MAX_RETRIES", "1")
    mirror.set_fault(origin_path(entry_url), Fault.stall(seconds=30, after=1000))
    started = time.monotonic()
    with pytest.raises(zoo.NetworkError, match="gave up"):
        zoo.fetch_weights(MODEL)
    assert time.monotonic() - started < 10
    assert_no_final_file()


def _fetch_in_subprocess() -> subprocess.Popen[str]:
    code = f"import zoo; print(zoo.fetch_weights({MODEL!r}))"
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )


def test_four_processes_download_once(mirror, payload, entry_url) -> None:
    # Slow the body down so that all four overlap on the lock.
    mirror.set_fault(origin_path(entry_url), Fault.stall(seconds=1.0, after=100_000))
    procs = [_fetch_in_subprocess() for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {str(final_path())}
    assert final_path().read_bytes() == payload
    assert len(mirror.log("GET")) == 1


def test_fetch_killed_with_sigkill_resumes_on_rerun(
    mirror, payload, entry_url, monkeypatch
) -> None:
    monkeypatch.setenv("ZOO_READ_TIMEOUT", "120")  # the child waits on the stall until killed
    key = origin_path(entry_url)
    mirror.set_fault(key, Fault.stall(seconds=60, after=2_000_000, times=1))
    proc = _fetch_in_subprocess()
    partial = final_path().with_name(final_path().name + ".incomplete")
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size >= 1_500_000):
        assert time.monotonic() < deadline, "the download never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_no_final_file()
    left_behind = partial.stat().st_size
    assert zoo.fetch_weights(MODEL).read_bytes() == payload
    assert mirror.log("GET")[-1].range == f"bytes={left_behind}-"


def test_unpinned_file_records_sha256_on_first_download(
    tmp_path, payload, entry_url, monkeypatch, caplog
) -> None:
    root = tmp_path / "storage"
    manifest = write_mirror(root, {entry_url: payload}, tmp_path / "m.json", pin=None)
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("ZOO_KERAS_MIRROR", str(root))  # a plain directory mirror
    with caplog.at_level(logging.WARNING, logger="zoo"):
        path = zoo.fetch_weights(MODEL)
    assert "no checksum is pinned" in caplog.text
    recorded = path.with_name(path.name + ".sha256").read_text().strip()
    assert recorded == hashlib.sha256(payload).hexdigest()
    # From now on the recorded digest is enforced: a changed file is fetched again.
    path.write_bytes(b"x" * len(payload))
    assert zoo.fetch_weights(MODEL).read_bytes() == payload


def test_file_url_mirror(tmp_path, payload, entry_url, monkeypatch) -> None:
    root = tmp_path / "storage"
    manifest = write_mirror(root, {entry_url: payload}, tmp_path / "m.json")
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("ZOO_KERAS_MIRROR", root.as_uri())
    assert zoo.fetch_weights(MODEL).read_bytes() == payload


def test_missing_file_in_directory_mirror_is_not_found(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ZOO_KERAS_MIRROR", str(tmp_path / "empty"))
    with pytest.raises(zoo.WeightsNotFoundError, match="no such file"):
        zoo.fetch_weights("vgg16")


def test_offline_names_the_missing_file_and_never_connects(mirror, monkeypatch) -> None:
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(zoo.OfflineError, match=final_path().name):
        zoo.fetch_weights(MODEL)
    assert mirror.log() == []
    monkeypatch.delenv("ZOO_OFFLINE")
    zoo.fetch_weights(MODEL)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert zoo.fetch_weights(MODEL) == final_path()  # a cache hit needs no network


def test_prepopulated_read_only_cache_works(mirror, payload, monkeypatch, isolated_home) -> None:
    zoo.fetch_weights(MODEL)
    # Make the cache unwritable in a way that binds root too: its lock folder is a file.
    shutil.rmtree(isolated_home / "locks")
    (isolated_home / "locks").write_text("not a folder")
    assert zoo.fetch_weights(MODEL).read_bytes() == payload
    with pytest.raises(zoo.CacheError, match="ZOO_HOME"):
        zoo.fetch_weights(MODEL, include_top=False)
