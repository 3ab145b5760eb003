"""UploadDataset: stream to a temporary file, verify, extract safely, publish atomically.

    ZOO_HOME/tmp/upload-<random>.part      the bytes as they arrive (hashed on the way)
    ZOO_HOME/tmp/dataset-<random>/         extraction / validation happens here
    ZOO_HOME/datasets/<id>/                published with one rename, then recorded in SQLite

Archives are extracted member by member, never with `extractall`: absolute paths, `..`,
symlinks, hard links, devices and FIFOs are refused (the whole upload fails), and the
number of files and the bytes actually written are capped, so neither a path trick nor a
zip/tar bomb gets out. Any failure, or the client going away, removes the temporary file
and folder: no half dataset is ever visible.
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
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zoo.errors import InvalidInputError
from zoo.vision.images import is_image_file
from zoo_server.db import Database, now_ms
from zoo_server.errors import UploadTooLargeError
from zoo_server.names import new_dataset_id

IMAGE_ZIP, IMAGE_TAR, TEXT_CSV, TEXT_JSONL = "IMAGE_ZIP", "IMAGE_TAR", "TEXT_CSV", "TEXT_JSONL"
FORMATS = (IMAGE_ZIP, IMAGE_TAR, TEXT_CSV, TEXT_JSONL)
IMAGE_FORMATS = (IMAGE_ZIP, IMAGE_TAR)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COPY_CHUNK = 1 << 20
_IGNORED = ("__MACOSX",)  # resource-fork folders some zip tools add


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
            f"dataset format {header.format!r} is not one of {', '.join(FORMATS)}")
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
        raise InvalidInputError(f"archive member {name!r} has a NUL byte in its name")
    if clean.startswith("/") or re.match(r"[A-Za-z]:", clean):
        raise InvalidInputError(
            f"archive member {name!r} has an absolute path; members must be relative")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInputError(f"archive member {name!r} escapes the dataset folder ('..')")
    return parts


class _Extractor:
    """Writes members under `root`, counting files and bytes against the limits."""

    def __init__(self, root: Path, limits: Limits):
        self.root, self.limits = root, limits
        self.files = 0
        self.bytes = 0

    def _target(self, name: str) -> Path | None:
        parts = member_parts(name)
        if not parts or parts[0] in _IGNORED or any(p.startswith("._") for p in parts):
            return None
        target = self.root.joinpath(*parts)
        if not target.resolve().is_relative_to(self.root.resolve()):
            raise InvalidInputError(f"archive member {name!r} escapes the dataset folder")
        return target

    def directory(self, name: str) -> None:
        target = self._target(name)
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)

    def file(self, name: str, source: IO[bytes], declared: int) -> None:
        target = self._target(name)
        if target is None:
            return
        self.files += 1
        if self.files > self.limits.max_files:
            raise InvalidInputError(
                f"the archive has more than {self.limits.max_files:,} files (the server's "
                "limit, --max-extract-files)")
        self._check_bytes(self.bytes + max(declared, 0))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise InvalidInputError(f"archive member {name!r} is both a folder and a file")
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


def extract_zip(archive: Path, root: Path, limits: Limits) -> None:
    out = _Extractor(root, limits)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > limits.max_files * 2:
                raise InvalidInputError(f"the archive has {len(members):,} members, over the "
                                        f"limit of {limits.max_files:,} files")
            declared = sum(m.file_size for m in members)
            out._check_bytes(declared)
            for info in members:
                mode = info.external_attr >> 16
                kind = stat.S_IFMT(mode)
                if kind == stat.S_IFLNK:
                    raise InvalidInputError(
                        f"archive member {info.filename!r} is a symbolic link; links are refused")
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise InvalidInputError(
                        f"archive member {info.filename!r} is not a regular file or folder")
                if info.is_dir():
                    out.directory(info.filename)
                    continue
                with zf.open(info) as source:
                    out.file(info.filename, source, info.file_size)
    except InvalidInputError:
        raise
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError,
            ValueError, OSError) as e:
        raise InvalidInputError(f"the upload is not a readable zip archive: {e}") from None


def extract_tar(archive: Path, root: Path, limits: Limits) -> None:
    out = _Extractor(root, limits)
    try:
        with tarfile.open(archive, mode="r:*") as tf:
            for member in tf:
                if member.issym() or member.islnk():
                    raise InvalidInputError(
                        f"archive member {member.name!r} is a link; links are refused")
                if member.isdir():
                    out.directory(member.name)
                elif member.isfile():
                    source = tf.extractfile(member)
                    assert source is not None
                    with source:
                        out.file(member.name, source, member.size)
                else:
                    raise InvalidInputError(f"archive member {member.name!r} is a device, FIFO or "
                                            "other special file; refused")
    except InvalidInputError:
        raise
    except (tarfile.TarError, zlib.error, EOFError, ValueError, OSError) as e:
        raise InvalidInputError(f"the upload is not a readable tar archive: {e}") from None


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
            "least 2 (cat/1.jpg, dog/2.png, ...; .jpg .png .bmp .gif .webp)")
    return sum(counts.values()), sorted(counts)


def _rows_csv(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    columns = set(reader.fieldnames or [])
    if not {"text", "label"} <= columns:
        raise InvalidInputError(
            f"the CSV needs a header with columns text,label; it has {', '.join(sorted(columns))}")
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
    def __init__(self, home: Path, db: Database, limits: Limits):
        self.home, self.db, self.limits = home, db, limits
        self.root = home / "datasets"
        self.tmp = home / "tmp"

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
