"""Fuzzing what the server unpacks and decodes: random bytes, mutated valid archives and
hostile ones built member by member (malformed headers, long-name and pax records, folders
by the hundred, links, devices, names that climb out) go through the dataset store's real
upload path; random and mutated bytes go through `zoo.vision.images.decode`.

Every outcome must be a clean success (a published dataset whose files are all regular
files inside it) or a typed error (InvalidInputError, or UploadTooLargeError for the
size limit) with a short one-line message, and either way nothing may be left in the
store's temporary folder or appear outside it. Each example has a deadline; the number of
examples keeps the whole file near half a minute on a loaded 2-core machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import zipfile
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.archives import tar_bytes, valid_members, zip_bytes
from zoo.errors import InvalidInputError
from zoo.vision.images import FORMATS, decode
from zoo_server.datasets import (
    IMAGE_TAR,
    IMAGE_ZIP,
    TEXT_CSV,
    TEXT_JSONL,
    DatasetStore,
    Header,
    Limits,
)
from zoo_server.db import Database
from zoo_server.errors import MESSAGE_LIMIT, UploadTooLargeError

MAX_FILES = 40
_QUOTED = re.compile(r"(['\"]).*?\1(\.\.\. \([\d,]+ characters\))?")
ESCAPE = Path("/tmp/zoo-fuzz-escape")  # a name some hostile members aim at
# ZOO_FUZZ_SCALE=10 runs ten times the examples, with fresh random choices, for a longer
# campaign; by default the examples are the same on every run (CI stays reproducible).
SCALE = float(os.environ.get("ZOO_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """Hypothesis settings for `examples` examples (about 30 s for the file in all)."""
    return settings(deadline=timedelta(seconds=3), max_examples=max(1, int(examples * SCALE)),
                    derandomize=SCALE == 1, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> DatasetStore:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    db = Database(home / "server.db")
    yield DatasetStore(home, db, Limits(max_upload=512 * 1024, max_extract=1 << 20,
                                        max_files=MAX_FILES))
    db.close()


def outside(store: DatasetStore) -> set[str]:
    """What is beside the home, and in the home besides the store's own entries."""
    names = {f"../{n}" for n in os.listdir(store.home.parent)}
    names |= set(os.listdir(store.home)) - {"datasets", "tmp", "server.db", "server.db-wal",
                                            "server.db-shm"}
    return names


def check_upload(store: DatasetStore, data: bytes, fmt: str) -> None:
    """Upload `data`; assert the outcome is clean whichever it is."""
    before = outside(store)
    header = Header("fuzz", fmt, hashlib.sha256(data).hexdigest(), max(len(data), 1))
    try:
        row = store.upload(header, [data])
    except (InvalidInputError, UploadTooLargeError) as e:
        message = str(e)
        assert message and len(message) <= MESSAGE_LIMIT and "\n" not in message, message
        # The kind of refusal, without the names it quotes: Hypothesis' statistics show
        # which checks the examples reached (pytest --hypothesis-show-statistics).
        event("refused: " + " ".join(_QUOTED.sub("'...'", message).split()[:6]))
    else:
        event("accepted")
        folder = store.root / row["id"]
        assert store.path(row).is_relative_to(folder) and store.path(row).exists()
        assert row["examples"] >= 2 and len(row["classes"]) >= 2
        for path in folder.rglob("*"):
            assert not path.is_symlink(), path
            assert path.is_file() or path.is_dir(), path
            assert path.resolve().is_relative_to(folder.resolve()), path
    assert list(store.tmp.iterdir()) == [], "an upload left temporary files"
    assert outside(store) == before, "something appeared outside the dataset store"
    if store.root.exists():
        assert set(os.listdir(store.root)) <= store.db.dataset_ids()
    assert not ESCAPE.exists()


# --- random bytes --------------------------------------------------------------------------


@fuzz(400)
@given(data=st.binary(max_size=4096),
       fmt=st.sampled_from([IMAGE_TAR, IMAGE_ZIP, TEXT_CSV, TEXT_JSONL]))
def test_random_bytes(store, data, fmt):
    check_upload(store, data, fmt)


# --- valid archives, mutated ---------------------------------------------------------------

MEMBERS = valid_members(3)
BASES = {
    "tar": (tar_bytes(MEMBERS), IMAGE_TAR, False),
    "tar.gz": (tar_bytes(MEMBERS), IMAGE_TAR, True),  # mutated, then gzipped: tar parsing sees it
    "pax": (tar_bytes(MEMBERS, fmt=tarfile.PAX_FORMAT), IMAGE_TAR, False),
    "zip": (zip_bytes(MEMBERS), IMAGE_ZIP, False),
    "zip stored": (zip_bytes(MEMBERS, compression=zipfile.ZIP_STORED), IMAGE_ZIP, False),
}
# Where the interesting bytes are: tar header fields (name, mode, size, checksum, type,
# magic), zip local and central headers and the end record.
TAR_FIELDS = [0, 100, 124, 136, 148, 156, 157, 257, 345, 512, 1024, 1536]


def mutate(data: bytes, draw) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["set", "flip", "field", "cut", "insert", "delete", "octal"]))
        at = draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "set" and buf:
            buf[at] = draw(st.integers(0, 255))
        elif kind == "flip" and buf:
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "field":
            start = draw(st.sampled_from(TAR_FIELDS)) + 512 * draw(st.integers(0, 3))
            buf[start:start + 12] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "cut":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del buf[at:at + draw(st.integers(1, 600))]
        elif kind == "octal":  # a tar size or checksum field with a plausible large number
            start = draw(st.sampled_from([124, 148, 636, 660])) + 512 * draw(st.integers(0, 2))
            buf[start:start + 12] = b"%011o\0" % draw(st.integers(0, 8**11 - 1))
    return bytes(buf)


@fuzz(600)
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_mutated_archives(store, base, data):
    raw, fmt, gz = BASES[base]
    mutated = mutate(raw, data.draw)
    if gz:
        comp = zlib.compressobj(6, zlib.DEFLATED, 31)
        mutated = comp.compress(mutated) + comp.flush()
    check_upload(store, mutated, fmt)


# --- hostile archives, member by member ----------------------------------------------------

COMPONENTS = ["cat", "dog", "a", "..", ".", "", "__MACOSX", "._hidden", "x\\..\\y", "C:",
              "é", "n" * 120, "n" * 260, str(ESCAPE).lstrip("/"), "\0"]
NAMES = st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4).map("/".join) | \
    st.sampled_from([str(ESCAPE), "/etc/passwd", "../../escape", "cat/1.png", "dog/2.png"])
KINDS = st.sampled_from(["file", "file", "file", "dir", "symlink", "hardlink", "chr", "blk",
                         "fifo", "contiguous"])
TAR_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
             "fifo": tarfile.FIFOTYPE, "contiguous": tarfile.CONTTYPE}
ZIP_MODES = {"file": 0o100644, "dir": 0o040755, "symlink": 0o120777, "hardlink": 0o100644,
             "chr": 0o020644, "blk": 0o060644, "fifo": 0o010644, "contiguous": 0o100644}
MEMBER = st.tuples(NAMES, KINDS, st.sampled_from([b"", b"x" * 10, valid_members()[0][1]]),
                   st.sampled_from([str(ESCAPE), "../x", "cat/0.png", "a" * 300]))


def hostile_tar(members, fmt: int, pax: dict[str, str], folders: int, gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=fmt,
                      pax_headers=pax if fmt == tarfile.PAX_FORMAT else None) as tar:
        for i in range(folders):
            info = tarfile.TarInfo(f"cat/f{i}")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, kind, payload, link in [*[(n, "file", d, "") for n, d in valid_members()],
                                          *members]:
            info = tarfile.TarInfo(name)
            info.type = TAR_TYPES[kind]
            info.linkname = link if kind in ("symlink", "hardlink") else ""
            if kind in ("file", "contiguous"):
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()


def hostile_zip(members, folders: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(folders):
            zf.writestr(f"cat/f{i}/", b"")
        for name, kind, payload, link in [*[(n, "file", d, "") for n, d in valid_members()],
                                          *members]:
            info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""))
            info.external_attr = ZIP_MODES[kind] << 16
            zf.writestr(info, link.encode() if kind == "symlink" else payload)
    return buf.getvalue()


@fuzz(300)
@given(members=st.lists(MEMBER, max_size=6),
       fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]),
       pax=st.dictionaries(st.sampled_from(["path", "linkpath", "comment", "size", "mtime",
                                            "uid", "GNU.sparse.map", "hdrcharset", "x"]),
                           st.text(max_size=300), max_size=4),
       folders=st.sampled_from([0, 1, MAX_FILES // 2, MAX_FILES + 1]),
       gz=st.booleans())
def test_hostile_tar_archives(store, members, fmt, pax, folders, gz):
    try:
        data = hostile_tar(members, fmt, pax, folders, gz)
    except (ValueError, UnicodeError, tarfile.TarError, OverflowError):
        assume(False)  # tarfile will not write it (a name too long for ustar, a NUL...)
    check_upload(store, data, IMAGE_TAR)


@fuzz(300)
@given(members=st.lists(MEMBER, max_size=6),
       folders=st.sampled_from([0, 1, MAX_FILES // 2, MAX_FILES + 1]))
def test_hostile_zip_archives(store, members, folders):
    try:
        data = hostile_zip(members, folders)
    except (ValueError, UnicodeError, zipfile.LargeZipFile):
        assume(False)
    check_upload(store, data, IMAGE_ZIP)


# --- images ----------------------------------------------------------------------------------


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


IMAGES = {fmt: _encoded(fmt) for fmt in FORMATS}


def check_decode(data: bytes) -> None:
    try:
        pixels = decode(data, (16, 16), max_pixels=1_000_000)
    except InvalidInputError as e:
        assert str(e) and len(str(e)) <= MESSAGE_LIMIT
    else:
        assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8


@fuzz(1000)
@given(data=st.binary(max_size=4096))
def test_random_bytes_as_images(data):
    check_decode(data)


@fuzz(500)
@given(fmt=st.sampled_from(sorted(IMAGES)), data=st.data())
def test_mutated_images(fmt, data):
    check_decode(mutate(IMAGES[fmt], data.draw))
