"""Verified, resumable, concurrent-safe placement of one file into the cache.

`place_file` tries each source in turn (https URLs, `file://` URLs, local paths) and
only ever writes `<dest>.incomplete` under a per-file lock; the bytes are hashed while
they stream, checked against the pinned checksum, then atomically renamed to
`dest`. A crash at any point leaves at worst an `.incomplete` file, which the next
attempt resumes with an HTTP Range request. Nothing at a final cache path is ever
partial or unverified.

There is no fsync before the rename: every cache hit is re-verified against its
checksum, so a file torn by a power cut is caught and fetched again, and skipping the
flush keeps large downloads at wire speed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests
import urllib3
from filelock import FileLock, Timeout

from zoo import config
from zoo.errors import (
    CacheError,
    ChecksumMismatchError,
    NetworkError,
    OfflineError,
    WeightsNotFoundError,
    ZooError,
)
from zoo.hub import cache
from zoo.hub.manifest import Checksum, FileEntry

log = logging.getLogger("zoo")

Progress = Callable[[int, "int | None"], None]
"""Called with (bytes done, total bytes or None) as a download advances."""

CHUNK = 1 << 20
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_session: requests.Session | None = None


def _http() -> requests.Session:
    global _session
    if _session is None:
        _session = requests.Session()
        _session.headers["User-Agent"] = "zoo-downloader/0.1"
    return _session


def is_remote(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def _local_path(source: str) -> Path:
    if source.startswith("file://"):
        return Path(unquote(urlparse(source).path))
    return Path(source).expanduser()


class _Sink:
    """An `.incomplete` file that hashes what is appended to it.

    Hashing runs on its own thread (hashlib releases the GIL), overlapping the socket
    reads and disk writes instead of adding to them: md5 alone runs at ~600 MB/s here,
    slower than loopback HTTP.
    """

    def __init__(self, path: Path, checksum: Checksum | None):
        self.path = path
        self.algorithm = checksum.algorithm if checksum else "sha256"
        self.file = open(path, "ab")
        self.size = self.file.tell()
        self._start_hasher()
        if self.size:  # resuming: the bytes already on disk are part of the digest
            with open(path, "rb") as f:
                while chunk := f.read(cache.HASH_CHUNK):
                    self._queue.put(chunk)

    def _start_hasher(self) -> None:
        self.hasher = cache.new_hasher(self.algorithm)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(
            target=self._hash_loop, args=(self.hasher, self._queue), daemon=True
        )
        self._thread.start()

    @staticmethod
    def _hash_loop(hasher: hashlib._Hash, chunks: queue.Queue[bytes | None]) -> None:
        while (chunk := chunks.get()) is not None:
            hasher.update(chunk)

    def _stop_hasher(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self._queue.put(data)
        self.size += len(data)

    def restart(self) -> None:
        self._stop_hasher()
        self.file.seek(0)
        self.file.truncate()
        self.size = 0
        self._start_hasher()

    def close(self) -> str:
        """Close the file; return the hex digest of everything in it."""
        if not self.file.closed:
            self.file.close()
            self._stop_hasher()
        return self.hasher.hexdigest()


def _backoff(attempt: int) -> None:
    base = float(os.environ.get("ZOO_RETRY_BACKOFF", "0.5"))
    time.sleep(min(base * 2**attempt, 8.0) * (0.5 + random.random() / 2))


def _reason(error: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, in a few words."""
    while True:
        inner = error.__cause__ or error.__context__
        reason = getattr(error, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
        if inner is None or inner is error:
            break
        error = inner
    text = str(error).rsplit("): ", 1)[-1] if "): " in str(error) else str(error)
    text = text.strip("()' ")[:160]
    return f"{type(error).__name__}: {text}"


def _download_http(url: str, sink: _Sink, progress: Progress | None) -> None:
    """Stream `url` into `sink`, resuming with Range after resets and truncation."""
    retries = config.max_retries()
    connect_timeout, read_timeout = config.timeouts()
    last_error = "no attempt"
    for attempt in range(retries + 1):
        if attempt:
            _backoff(attempt - 1)
        headers = {"Range": f"bytes={sink.size}-"} if sink.size else {}
        try:
            with _http().get(
                url, headers=headers, stream=True, timeout=(connect_timeout, read_timeout)
            ) as response:
                status = response.status_code
                if status in (404, 410):
                    raise WeightsNotFoundError(f"answered {status} Not Found")
                if status in (401, 403):
                    raise WeightsNotFoundError(f"answered {status}: access denied")
                if status == 416:  # our partial file is no prefix of theirs: start over
                    sink.restart()
                    last_error = "416 Range Not Satisfiable"
                    continue
                if status in _RETRY_STATUS:
                    last_error = f"HTTP {status}"
                    continue
                if status not in (200, 206):
                    raise NetworkError(f"answered HTTP {status}")
                if status == 200 and sink.size:
                    sink.restart()  # the server ignored Range and sent the whole file
                if status == 206 and not response.headers.get("Content-Range", "").startswith(
                    f"bytes {sink.size}-"
                ):
                    sink.restart()
                    last_error = "206 with an unexpected Content-Range"
                    continue
                length = response.headers.get("Content-Length")
                total = sink.size + int(length) if length and length.isdigit() else None
                if progress:
                    progress(sink.size, total)
                # read1 hands over whatever has arrived (up to CHUNK), so bytes received
                # before a connection breaks still reach the disk and are not re-fetched.
                while chunk := response.raw.read1(CHUNK):
                    sink.write(chunk)
                    if progress:
                        progress(sink.size, total)
                if total is not None and sink.size < total:
                    last_error = f"body ended after {sink.size} of {total} bytes"
                    continue
                return
        except (requests.ConnectionError, requests.Timeout) as e:
            last_error = _reason(e)
        except (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError) as e:
            last_error = f"connection broken mid-body: {e}"
        except requests.RequestException as e:
            raise NetworkError(_reason(e)) from e
        log.info("download of %s interrupted (%s); retrying", url, last_error)
    raise NetworkError(f"gave up after {retries + 1} attempts ({last_error})")


def _copy_local(path: Path, sink: _Sink, progress: Progress | None) -> None:
    if not path.is_file():
        raise WeightsNotFoundError("no such file")
    sink.restart()
    total = path.stat().st_size
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sink.write(chunk)
            if progress:
                progress(sink.size, total)


@contextmanager
def _file_lock(dest: Path) -> Iterator[None]:
    locks = cache.locks_dir()
    try:
        locks.mkdir(parents=True, exist_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(
            f"cannot write to the cache at {config.zoo_home()} ({e.strerror}); "
            "point ZOO_HOME at a writable folder"
        ) from e
    lock = FileLock(str(locks / f"{dest.name}.lock"))
    try:
        with lock.acquire(timeout=float(os.environ.get("ZOO_LOCK_TIMEOUT", "3600"))):
            yield
    except Timeout as e:
        raise CacheError(f"timed out waiting for another process to download {dest.name}") from e


def _fetch_one(source: str, dest: Path, entry: FileEntry, progress: Progress | None) -> None:
    """Fill `dest` from one source, or raise without touching `dest`."""
    partial = dest.with_name(dest.name + cache.PARTIAL_SUFFIX)
    expected = cache.expected_checksum(dest, entry)
    for fresh_retry in (False, True):
        if fresh_retry:
            partial.unlink(missing_ok=True)
        sink = _Sink(partial, expected)
        resumed = sink.size > 0
        try:
            if is_remote(source):
                _download_http(source, sink, progress)
            else:
                _copy_local(_local_path(source), sink, progress)
        except NetworkError:
            sink.close()  # keep the partial file: the next attempt resumes it
            raise
        except BaseException:
            sink.close()  # not resumable (or interrupted by the user): leave nothing
            partial.unlink(missing_ok=True)
            raise
        digest = sink.close()
        bad_size = entry.size is not None and sink.size != entry.size
        if bad_size or (expected is not None and digest != expected.value):
            partial.unlink(missing_ok=True)
            if resumed and not fresh_retry:
                log.info("%s: resumed download did not verify; starting over", dest.name)
                continue
            what = (
                f"{sink.size} bytes, expected {entry.size}"
                if bad_size
                else f"{expected.algorithm} {digest}, expected {expected.value}"  # type: ignore[union-attr]
            )
            raise ChecksumMismatchError(
                f"{dest.name} from {source} does not match the manifest ({what}); "
                "the file was discarded"
            )
        os.replace(partial, dest)
        if expected is None:
            cache.record_checksum(dest, digest)
            log.warning(
                "%s: no checksum is pinned for this file; recorded sha256 %s on first "
                "download and will verify against it from now on",
                dest.name,
                digest,
            )
        return


def place_file(
    dest: Path,
    entry: FileEntry,
    sources: Sequence[str],
    *,
    progress: Progress | None = None,
) -> Path:
    """Return `dest` holding the verified bytes of `entry`, fetching them if needed.

    A valid cached file is returned before anything is locked or created, so a
    read-only, pre-populated cache works.
    """
    if dest.is_file():
        if cache.verify(dest, entry):
            return dest
        log.warning("%s: cached file fails verification; fetching it again", dest.name)
    usable = [s for s in sources if not (config.offline() and is_remote(s))]
    if not usable:
        raise OfflineError(
            f"{entry.filename} is not in the cache ({dest}) and offline mode is on; "
            "unset ZOO_OFFLINE/HF_HUB_OFFLINE, set ZOO_KERAS_MIRROR to a local folder, "
            "or copy the file there"
        )
    with _file_lock(dest):
        if dest.is_file():
            if cache.verify(dest, entry):
                return dest  # another process finished it while we waited
            dest.unlink()
        failures: list[tuple[str, ZooError]] = []
        for source in usable:
            try:
                _fetch_one(source, dest, entry, progress)
                return dest
            except (WeightsNotFoundError, NetworkError, ChecksumMismatchError) as e:
                log.info("source %s failed: %s", source, e)
                failures.append((source, e))
            except OSError as e:
                raise CacheError(f"cannot write {dest}: {e.strerror}") from e
    raise _summarise(entry, failures)


def _summarise(entry: FileEntry, failures: list[tuple[str, ZooError]]) -> ZooError:
    """One error for the caller, of the most telling type, naming every source tried."""
    tried = "; ".join(f"{source}: {error}" for source, error in failures)
    for kind in (ChecksumMismatchError, NetworkError, WeightsNotFoundError):
        if any(isinstance(e, kind) for _, e in failures):
            error_type = kind
            break
    fixes = {
        ChecksumMismatchError: "check the mirror holds the official file",
        NetworkError: "check the network or set ZOO_KERAS_MIRROR to a reachable mirror",
        WeightsNotFoundError: "check ZOO_KERAS_MIRROR or the origin URL",
    }
    return error_type(
        f"could not fetch {entry.filename} (tried {tried}); {fixes[error_type]}"
    )
