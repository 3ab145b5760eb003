"""UploadDataset: stream to a temporary file, verify, extract safely, publish atomically.

    ZOO_HOME/tmp/upload-<random>.part      the bytes as they arrive (hashed on the way)
    ZOO_HOME/tmp/dataset-<random>/         extraction / validation happens here
    ZOO_HOME/datasets/<id>/                published with one rename, then recorded in SQLite

Archives are extracted member by member, never with `extractall`: absolute paths, `..`,
symlinks, hard links, devices and FIFOs are refused (the whole upload fails), and the
number of members (files and folders alike) and the bytes actually written are capped, so
neither a path trick nor a zip/tar bomb gets out. Folders are never created for their own
sake, only as the parents of files, so an archive of empty folders costs no inodes. Any
failure, or the client going away, removes the temporary file and folder: no half dataset
is ever visible.

Archive metadata is bounded before it is read. `tarfile` reads a GNU long-name or pax
record whole, at whatever size its header claims (300 MiB from a 300 KB tar.gz), so tar
headers go through `_BoundedTarInfo`, which refuses such records over `MAX_TAR_METADATA`
and counts them; a zip's central directory is walked (`count_zip_members`) before
`zipfile` builds an object for every entry.

Datasets are deleted on request (`DatasetStore.delete`, refused while a queued or running
job uses one) and, with a retention period, when no job has used them for that long
(`DatasetStore.expire`, at start and every hour).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import struct
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zoo.errors import InvalidInputError
from zoo.vision.images import IMAGE_SUFFIXES, is_image_file
from zoo_server.db import Database, now_ms
from zoo_server.errors import JobStateError, NotFoundError, UploadTooLargeError, quote
from zoo_server.logs import log_event
from zoo_server.names import DATASET_ID, new_dataset_id

IMAGE_ZIP, IMAGE_TAR, TEXT_CSV, TEXT_JSONL = "IMAGE_ZIP", "IMAGE_TAR", "TEXT_CSV", "TEXT_JSONL"
FORMATS = (IMAGE_ZIP, IMAGE_TAR, TEXT_CSV, TEXT_JSONL)
IMAGE_FORMATS = (IMAGE_ZIP, IMAGE_TAR)
# File name endings of each format, for clients that pick the format from a file's name (the
# web page; zoo_client keeps its own copy, as it imports nothing of the server).
SUFFIXES = {IMAGE_ZIP: (".zip",), IMAGE_TAR: (".tar", ".tar.gz", ".tgz"), TEXT_CSV: (".csv",),
            TEXT_JSONL: (".jsonl", ".ndjson")}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COPY_CHUNK = 1 << 20
_IGNORED = ("__MACOSX",)  # resource-fork folders some zip tools add
# A GNU long-name/long-link or pax record holds a member's long name and attributes: a few
# KiB in any real archive (PATH_MAX is 4 KiB). Larger ones are refused unread.
MAX_TAR_METADATA = 64 * 1024
_NAME_MAX = 255  # bytes of one file or folder name on Linux file systems
EXPIRY_INTERVAL_S = 3600.0
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Limits:
    max_upload: int
    max_extract: int
    max_files: int


@dataclass(frozen=True)
class Header:
    name: str
    format: str
    sha256: str
    size: int


def check_header(header: Header, limits: Limits) -> None:
    if header.format not in FORMATS:
        raise InvalidInputError(
            f"dataset format {quote(header.format)} is not one of {', '.join(FORMATS)}")
    if not _SHA256.fullmatch(header.sha256):
        raise InvalidInputError("header.sha256 must be the 64-character lower-case hex sha256 "
                                "of the whole upload")
    if header.size <= 0:
        raise InvalidInputError("header.size must be the upload's size in bytes (positive)")
    if header.size > limits.max_upload:
        raise UploadTooLargeError(
            f"the upload is {header.size:,} bytes, over the server's limit of "
            f"{limits.max_upload:,} (--max-upload-mb)")
    if len(header.name) > 200:
        raise InvalidInputError("header.name is longer than 200 characters")


# --- receiving -------------------------------------------------------------------------------


def receive(chunks: Iterable[bytes], header: Header, target: IO[bytes],
            on_bytes: Any = None) -> None:
    """Write `chunks` to `target`, checking size and sha256 against the header."""
    digest = hashlib.sha256()
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > header.size:
            raise InvalidInputError(
                f"the upload sent more bytes than header.size ({header.size:,}); discarded")
        digest.update(chunk)
        target.write(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    if received != header.size:
        raise InvalidInputError(
            f"the upload ended after {received:,} of {header.size:,} bytes; discarded")
    if digest.hexdigest() != header.sha256:
        raise InvalidInputError(
            f"sha256 mismatch: the bytes received hash to {digest.hexdigest()}, the header "
            f"says {header.sha256}; the upload was discarded")


# --- safe extraction -------------------------------------------------------------------------


def member_parts(name: str) -> list[str]:
    """The path components of an archive member, or InvalidInputError if it could escape."""
    clean = name.replace("\\", "/")
    if "\0" in clean:
        raise InvalidInputError(f"archive member {quote(name)} has a NUL byte in its name")
    if clean.startswith("/") or re.match(r"[A-Za-z]:", clean):
        raise InvalidInputError(
            f"archive member {quote(name)} has an absolute path; members must be relative")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInputError(f"archive member {quote(name)} escapes the dataset folder ('..')")
    if any(len(p.encode("utf-8", "surrogateescape")) > _NAME_MAX for p in parts):
        raise InvalidInputError(f"archive member {quote(name)} has a file or folder name longer "
                                f"than {_NAME_MAX} bytes")
    return parts


def _too_many(limit: int) -> InvalidInputError:
    return InvalidInputError(
        f"the archive has more than {limit:,} members (files and folders; the server's "
        "limit, --max-extract-files)")


class _Extractor:
    """Writes members under `root`, counting members and bytes against the limits."""

    def __init__(self, root: Path, limits: Limits):
        self.root, self.limits = root, limits
        self.resolved_root = root.resolve()
        self.members = 0
        self.bytes = 0

    def _count(self) -> None:
        self.members += 1
        if self.members > self.limits.max_files:
            raise _too_many(self.limits.max_files)

    def _target(self, name: str) -> Path | None:
        parts = member_parts(name)
        if not parts or parts[0] in _IGNORED or any(p.startswith("._") for p in parts):
            return None
        target = self.root.joinpath(*parts)
        # member_parts already refused every way out; this also catches a link on the
        # way, although no member can make one (links are refused, never created).
        if not target.resolve().is_relative_to(self.resolved_root):
            raise InvalidInputError(f"archive member {quote(name)} escapes the dataset folder")
        return target

    def directory(self, name: str) -> None:
        """A folder member: counted and its name checked, but nothing is created (a folder
        appears when a file needs it), so folders cost no inodes and no file-system calls."""
        self._count()
        member_parts(name)

    def file(self, name: str, source: IO[bytes], declared: int) -> None:
        self._count()
        target = self._target(name)
        if target is None:
            return
        self._check_bytes(self.bytes + max(declared, 0))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise InvalidInputError(f"archive member {quote(name)} is both a folder and a file")
        with open(target, "wb") as out:
            while chunk := source.read(_COPY_CHUNK):
                self.bytes += len(chunk)
                self._check_bytes(self.bytes)
                out.write(chunk)

    def _check_bytes(self, total: int) -> None:
        if total > self.limits.max_extract:
            raise InvalidInputError(
                f"the archive expands to more than {self.limits.max_extract:,} bytes (the "
                "server's limit, --max-extract-mb); refusing it (a zip bomb?)")


# zipfile's end-record reader and record layouts: not public, but stable since Python 2.6.
_ZIP: Any = zipfile
_CENTRAL_DIR = struct.Struct(_ZIP.structCentralDir)


def count_zip_members(archive: Path, limit: int) -> int:
    """The number of entries in a zip's central directory, walked record by record, so
    that an archive of millions of tiny entries is refused before `zipfile` builds an
    object for each. The walk follows zipfile's own (where the directory starts, how an
    entry's length is read), so the two agree on what the members are."""
    with open(archive, "rb") as f:
        end = _ZIP._EndRecData(f)
        if end is None:
            raise zipfile.BadZipFile("no end of central directory record")
        size = end[_ZIP._ECD_SIZE]
        start = end[_ZIP._ECD_LOCATION] - size
        if end[_ZIP._ECD_SIGNATURE] == _ZIP.stringEndArchive64:
            start -= _ZIP.sizeEndCentDir64 + _ZIP.sizeEndCentDir64Locator
        if start < 0:
            raise zipfile.BadZipFile("the central directory starts before the file")
        f.seek(start)
        count = done = 0
        while done < size:
            record = f.read(_CENTRAL_DIR.size)
            if len(record) != _CENTRAL_DIR.size or record[:4] != _ZIP.stringCentralDir:
                raise zipfile.BadZipFile("bad central directory entry")
            fields = _CENTRAL_DIR.unpack(record)
            extra = fields[12] + fields[13] + fields[14]  # name, extra field, comment lengths
            f.seek(extra, os.SEEK_CUR)
            done += _CENTRAL_DIR.size + extra
            count += 1
            if count > limit:
                raise _too_many(limit)
    return count


def extract_zip(archive: Path, root: Path, limits: Limits) -> None:
    out = _Extractor(root, limits)
    try:
        count_zip_members(archive, limits.max_files)
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > limits.max_files:
                raise _too_many(limits.max_files)
            declared = sum(m.file_size for m in members)
            out._check_bytes(declared)
            for info in members:
                if not info.filename:  # zipfile cuts names at a NUL byte
                    raise InvalidInputError("the archive has a member with an empty name")
                mode = info.external_attr >> 16
                kind = stat.S_IFMT(mode)
                if kind == stat.S_IFLNK:
                    raise InvalidInputError(
                        f"archive member {quote(info.filename)} is a symbolic link; links are "
                        "refused")
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise InvalidInputError(
                        f"archive member {quote(info.filename)} is not a regular file or folder")
                if info.is_dir():
                    out.directory(info.filename)
                    continue
                with zf.open(info) as source:
                    out.file(info.filename, source, info.file_size)
    except InvalidInputError:
        raise
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError,
            ValueError, OSError, struct.error) as e:
        raise InvalidInputError(
            f"the upload is not a readable zip archive: {quote(e, 300)}") from None


_TAR_METADATA = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                 tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header that refuses, before anything after it is read, the records `tarfile`
    would read whole whatever their size: GNU long names and links and pax headers over
    MAX_TAR_METADATA bytes, and GNU sparse files (whose maps come in any number of extra
    blocks). Every header is counted, so an archive of endless metadata records stops at
    the member limit too.

    `_proc_member` is where tarfile dispatches on a header's type, right after parsing
    the 512-byte block and before reading what follows; it has had that role and
    signature since Python 3.2, and the tarinfo class is tarfile's documented extension
    point (`TarFile.tarinfo`)."""

    def _proc_member(self, tarfile_: Any) -> Any:
        tarfile_.headers_seen += 1
        if tarfile_.headers_seen > tarfile_.max_headers:
            raise _too_many(tarfile_.max_members)
        if self.type in _TAR_METADATA and self.size > MAX_TAR_METADATA:
            raise InvalidInputError(
                f"the archive has a {self.size:,}-byte long-name or pax record (at most "
                f"{MAX_TAR_METADATA:,} accepted); refusing it unread")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise InvalidInputError("the archive has a GNU sparse file; sparse files are "
                                    "not accepted")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


class _BoundedTarFile(tarfile.TarFile):
    """A TarFile whose headers are `_BoundedTarInfo`s, counted against the member limit."""

    tarinfo = _BoundedTarInfo

    def __init__(self, *args: Any, max_members: int = 0, **kwargs: Any):
        self.max_members = max_members
        # Each member may carry a long-name, a long-link and a pax record of its own.
        self.max_headers = 4 * max_members + 16
        self.headers_seen = 0
        super().__init__(*args, **kwargs)


def extract_tar(archive: Path, root: Path, limits: Limits) -> None:
    out = _Extractor(root, limits)
    try:
        # max_members reaches _BoundedTarFile.__init__ through open's **kwargs.
        with _BoundedTarFile.open(archive, mode="r:*",  # type: ignore[call-overload]
                                  max_members=limits.max_files) as tf:
            for member in tf:
                if member.issym() or member.islnk():
                    raise InvalidInputError(
                        f"archive member {quote(member.name)} is a link; links are refused")
                if member.sparse is not None:
                    raise InvalidInputError(f"archive member {quote(member.name)} is a sparse "
                                            "file; sparse files are not accepted")
                if member.isdir():
                    out.directory(member.name)
                elif member.isfile():
                    source = tf.extractfile(member)
                    if source is None:
                        raise InvalidInputError(
                            f"archive member {quote(member.name)} has no data")
                    with source:
                        out.file(member.name, source, member.size)
                else:
                    raise InvalidInputError(f"archive member {quote(member.name)} is a device, "
                                            "FIFO or other special file; refused")
    except InvalidInputError:
        raise
    except (tarfile.TarError, zlib.error, EOFError, ValueError, OSError, RecursionError) as e:
        raise InvalidInputError(
            f"the upload is not a readable tar archive: {quote(e, 300)}") from None


# --- what is in it ---------------------------------------------------------------------------


def image_root(folder: Path) -> Path:
    """The folder holding the class folders: `folder` itself, or the single folder an
    archive wrapped everything in (`digits/0/...`)."""
    root = folder
    for _ in range(3):
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        dirs = [p for p in entries if p.is_dir()]
        if len(dirs) == 1 and len(entries) == 1 and any(
                p.is_dir() for p in dirs[0].iterdir() if not p.name.startswith(".")):
            root = dirs[0]
        else:
            break
    return root


def summarize_images(root: Path) -> tuple[int, list[str]]:
    counts = {}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        n = sum(1 for p in class_dir.rglob("*") if is_image_file(p))
        if n:
            counts[class_dir.name] = n
    if len(counts) < 2:
        raise InvalidInputError(
            f"the archive has {len(counts)} class folder(s) with images; a classifier needs at "
            f"least 2 (cat/1.jpg, dog/2.png, ...; {' '.join(sorted(IMAGE_SUFFIXES))})")
    return sum(counts.values()), sorted(counts)


def _rows_csv(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    columns = set(reader.fieldnames or [])
    if not {"text", "label"} <= columns:
        raise InvalidInputError(
            "the CSV needs a header with columns text,label; it has "
            f"{quote(', '.join(sorted(columns)))}")
    yield from enumerate(reader, start=2)


def _rows_jsonl(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(data.decode("utf-8-sig").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as e:
            raise InvalidInputError(f"line {line} is not JSON: {e}") from None
        if not isinstance(row, dict):
            raise InvalidInputError(f"line {line} is not a JSON object with text and label")
        yield line, row


def summarize_text(path: Path, fmt: str) -> tuple[int, list[str]]:
    data = path.read_bytes()
    try:
        rows = list(_rows_csv(data) if fmt == TEXT_CSV else _rows_jsonl(data))
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"the text dataset is not UTF-8: {e}") from None
    except csv.Error as e:
        raise InvalidInputError(f"the text dataset is not valid CSV: {e}") from None
    labels: set[str] = set()
    for line, row in rows:
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"line {line}: empty or missing text")
        if label is None or isinstance(label, (dict, list)) or not str(label).strip():
            raise InvalidInputError(f"line {line}: empty or missing label")
        labels.add(str(label).strip())
    if not rows:
        raise InvalidInputError("the text dataset has no examples")
    if len(labels) < 2:
        raise InvalidInputError(f"the text dataset has {len(labels)} label(s); a classifier "
                                "needs at least 2")
    return len(rows), sorted(labels)


# --- the whole upload ------------------------------------------------------------------------


class DatasetStore:
    def __init__(self, home: Path, db: Database, limits: Limits, retention_days: float = 0.0):
        self.home, self.db, self.limits = home, db, limits
        self.retention_days = retention_days  # 0: keep datasets until deleted
        self.root = home / "datasets"
        self.tmp = home / "tmp"
        self._stop = threading.Event()
        self._expiry: threading.Thread | None = None

    def cleanup(self) -> None:
        """At start: drop leftovers of uploads a crash interrupted, and dataset folders
        that never made it into the database."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        known = self.db.dataset_ids()
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if folder.name not in known:
                    shutil.rmtree(folder, ignore_errors=True)

    def path(self, row: dict[str, Any]) -> Path:
        return self.home / row["path"]

    def get(self, dataset_id: str) -> dict[str, Any]:
        """The dataset's row, or NotFoundError (also for strings that are not dataset ids,
        whatever their length: they are quoted cut short)."""
        row = self.db.dataset(dataset_id) if DATASET_ID.fullmatch(dataset_id) else None
        if row is None:
            raise NotFoundError(f"no dataset {quote(dataset_id)}; upload one with "
                                "UploadDataset")
        return row

    # --- deleting --------------------------------------------------------------------------

    def delete(self, dataset_id: str) -> dict[str, Any]:
        """Delete a dataset: its row, then its folder. FAILED_PRECONDITION while a queued or
        running job uses it (checked and deleted in one statement, so a job cannot start
        using it in between); NOT_FOUND for unknown ids. Returns the deleted row."""
        row = self.get(dataset_id)
        if not self.db.delete_dataset_unless_used(dataset_id):
            jobs = self.db.active_jobs_using(dataset_id)
            raise JobStateError(
                f"dataset {dataset_id} is used by {len(jobs)} queued or running job(s) "
                f"({', '.join(jobs[:5])}); cancel them or wait until they end")
        self._remove_folder(dataset_id)
        log_event("dataset_deleted", dataset=dataset_id)
        return row

    def _remove_folder(self, dataset_id: str) -> None:
        """Rename the folder away first, so it vanishes at once, then remove it. A crash in
        between leaves it in tmp/, which `cleanup` clears at the next start."""
        folder = self.root / dataset_id
        if not folder.exists():
            return
        self.tmp.mkdir(parents=True, exist_ok=True)
        doomed = self.tmp / f"deleted-{dataset_id}-{secrets.token_hex(4)}"
        try:
            os.replace(folder, doomed)
        except OSError:
            doomed = folder
        shutil.rmtree(doomed, ignore_errors=True)

    def expire(self, now: int | None = None) -> list[str]:
        """Delete every dataset no job has used (created, queued, run) for longer than the
        retention period; returns their ids. Nothing, without a retention period."""
        if self.retention_days <= 0:
            return []
        cutoff = (now_ms() if now is None else now) - int(self.retention_days * DAY_MS)
        expired = []
        for dataset_id in self.db.datasets_unused_since(cutoff):
            if self.db.delete_dataset_unless_used(dataset_id, unused_since=cutoff):
                self._remove_folder(dataset_id)
                expired.append(dataset_id)
        if expired:
            log_event("datasets_expired", count=len(expired), days=self.retention_days)
        return expired

    def start_expiry(self, interval_s: float = EXPIRY_INTERVAL_S) -> None:
        """Expire datasets now and then every `interval_s`, on a daemon thread."""
        if self.retention_days <= 0 or self._expiry is not None:
            return
        self.expire()

        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.expire()
                except Exception as e:  # keep expiring whatever one pass hit
                    log_event("dataset_expiry_error", error=repr(e))

        self._expiry = threading.Thread(target=run, name="dataset-expiry", daemon=True)
        self._expiry.start()

    def close(self) -> None:
        self._stop.set()
        if self._expiry is not None:
            self._expiry.join(timeout=5)

    def upload(self, header: Header, chunks: Iterable[bytes], on_bytes: Any = None
               ) -> dict[str, Any]:
        check_header(header, self.limits)
        self.tmp.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        part = self.tmp / f"upload-{token}.part"
        staging = self.tmp / f"dataset-{token}"
        try:
            with open(part, "xb") as target:
                receive(chunks, header, target, on_bytes)
            existing = self.db.dataset_by_digest(header.sha256, header.format)
            if existing is not None and self.path(existing).exists():
                return existing
            staging.mkdir()
            relative, examples, classes = self._unpack(part, staging, header.format)
            dataset_id = new_dataset_id()
            self.root.mkdir(parents=True, exist_ok=True)
            final = self.root / dataset_id
            os.replace(staging, final)
            row = {"id": dataset_id, "name": header.name, "format": header.format,
                   "sha256": header.sha256, "size": header.size, "examples": examples,
                   "classes": classes, "path": str(Path("datasets") / dataset_id / relative),
                   "created_ms": now_ms()}
            try:
                self.db.add_dataset(row)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            return row
        finally:
            part.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)

    def _unpack(self, part: Path, staging: Path, fmt: str) -> tuple[str, int, list[str]]:
        """Extract/validate into `staging`; returns (data path relative to it, examples,
        classes)."""
        if fmt in IMAGE_FORMATS:
            files = staging / "files"
            files.mkdir()
            (extract_zip if fmt == IMAGE_ZIP else extract_tar)(part, files, self.limits)
            root = image_root(files)
            examples, classes = summarize_images(root)
            return str(root.relative_to(staging)), examples, classes
        name = "data.csv" if fmt == TEXT_CSV else "data.jsonl"
        os.replace(part, staging / name)
        examples, classes = summarize_text(staging / name, fmt)
        return name, examples, classes
