"""The on-disk cache: where each file lives and whether its bytes are the right ones.

Layout under `ZOO_HOME` (default `~/.cache/zoo`):

    keras/<filename>              Keras-style weight files and assets, named as Keras names them
    keras/<filename>.sha256       digest recorded on first download where Keras pins none
    keras/<filename>.incomplete   a download in progress (resumed with HTTP Range)
    locks/<filename>.lock         one lock per file, so concurrent processes download once

Text snapshots live in huggingface_hub's own cache (`$HF_HOME/hub`), shared with every
other Hugging Face tool, or are read in place from the installed package that carries them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from zoo import config
from zoo.hub.manifest import Checksum, FileEntry

log = logging.getLogger("zoo")

RECORDED_SUFFIX = ".sha256"
PARTIAL_SUFFIX = ".incomplete"
HASH_CHUNK = 1 << 20


def keras_dir() -> Path:
    return config.zoo_home() / "keras"


def locks_dir() -> Path:
    return config.zoo_home() / "locks"


def keras_path(entry: FileEntry) -> Path:
    return keras_dir() / entry.filename


def new_hasher(algorithm: str) -> hashlib._Hash:
    return hashlib.md5(usedforsecurity=False) if algorithm == "md5" else hashlib.sha256()


def file_digest(path: Path, algorithm: str) -> str:
    hasher = new_hasher(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def recorded_checksum(path: Path) -> Checksum | None:
    """The sha256 recorded beside a file whose origin pins no checksum, if any."""
    sidecar = path.with_name(path.name + RECORDED_SUFFIX)
    try:
        value = sidecar.read_text(encoding="ascii").strip().lower()
    except OSError:
        return None
    if len(value) != 64:
        return None
    return Checksum("sha256", value)


def record_checksum(path: Path, digest: str) -> None:
    sidecar = path.with_name(path.name + RECORDED_SUFFIX)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(digest + "\n", encoding="ascii")
    os.replace(tmp, sidecar)


def expected_checksum(path: Path, entry: FileEntry) -> Checksum | None:
    return entry.checksum or recorded_checksum(path)


def verify(path: Path, entry: FileEntry, *, record: bool = True) -> bool:
    """True when `path` holds exactly the bytes `entry` pins (or first recorded).

    A file with no pinned and no recorded checksum counts as valid once its size
    matches (where known); with `record`, its sha256 is recorded now when the cache
    is writable, so every later hit is checked.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if entry.size is not None and size != entry.size:
        return False
    expected = expected_checksum(path, entry)
    if expected is None:
        if not record:
            return True
        digest = file_digest(path, "sha256")
        try:
            record_checksum(path, digest)
            log.warning(
                "%s: no checksum is pinned for this file; recorded sha256 %s and will "
                "verify against it from now on",
                path.name,
                digest,
            )
        except OSError:
            pass  # read-only cache: nothing to record into
        return True
    return file_digest(path, expected.algorithm) == expected.value


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
