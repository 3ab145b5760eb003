"""Turn what callers hold into what the API takes: image bytes, dataset uploads, settings.

Images may be paths, encoded bytes, PIL images or uint8 numpy arrays; the last two
need Pillow (`pip install zoo-client[images]`), imported only when used.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from zoo_api.v1 import finetune_pb2
from zoo_client.errors import InvalidInput

ImageLike = Union[str, "os.PathLike[str]", bytes, Any]  # Any: PIL.Image.Image, numpy.ndarray
CHUNK = 1 << 20
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def image_bytes(image: ImageLike) -> bytes:
    """Encoded bytes for one image: files are read, arrays and PIL images become PNG."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, (str, os.PathLike)):
        try:
            return Path(image).read_bytes()
        except OSError as e:
            raise InvalidInput(f"{image}: {e.strerror or e}") from None
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    if hasattr(image, "dtype") and hasattr(image, "shape"):  # a numpy array
        if str(image.dtype) != "uint8" or image.ndim not in (2, 3):
            raise InvalidInput(f"arrays must be uint8 (H, W) or (H, W, C), got {image.dtype} {image.shape}")
        try:
            from PIL import Image
        except ImportError:
            raise InvalidInput("numpy images need Pillow: pip install 'zoo-client[images]'") from None
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()
    raise InvalidInput(f"cannot send {type(image).__name__} as an image; give a path, bytes, "
                       "a PIL image or a uint8 numpy array")


@dataclass(frozen=True)
class Upload:
    path: Path
    format: int
    size: int
    sha256: str


def _digest(path: Path) -> tuple[int, str]:
    hasher, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def _format_of(path: Path) -> int:
    name = path.name.lower()
    if name.endswith(".zip"):
        return finetune_pb2.IMAGE_ZIP
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return finetune_pb2.IMAGE_TAR
    if name.endswith(".csv"):
        return finetune_pb2.TEXT_CSV
    if name.endswith((".jsonl", ".ndjson")):
        return finetune_pb2.TEXT_JSONL
    raise InvalidInput(f"{path}: upload a folder of class folders, a .zip/.tar(.gz) of one, "
                       "or a .csv/.jsonl of text,label")


def _zip_folder(folder: Path, target: Path) -> None:
    files = [p for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise InvalidInput(f"{folder} holds no images in class folders")
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.write(file, file.relative_to(folder).as_posix())


@contextmanager
def prepared_upload(path: str | os.PathLike[str]) -> Iterator[Upload]:
    """The file to stream for `path` (a folder is zipped to a temporary file first)."""
    source = Path(path).expanduser()
    if not source.exists():
        raise InvalidInput(f"{source} does not exist")
    if source.is_dir():
        with tempfile.TemporaryDirectory(prefix="zoo-upload-") as tmp:
            archive = Path(tmp) / f"{source.name}.zip"
            _zip_folder(source, archive)
            yield Upload(archive, finetune_pb2.IMAGE_ZIP, *_digest(archive))
        return
    yield Upload(source, _format_of(source), *_digest(source))


def upload_requests(upload: Upload, name: str) -> Iterator[finetune_pb2.UploadDatasetRequest]:
    header = finetune_pb2.DatasetHeader(name=name, format=upload.format,  # type: ignore[arg-type]
                                        sha256=upload.sha256, size=upload.size)
    yield finetune_pb2.UploadDatasetRequest(header=header)
    with open(upload.path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield finetune_pb2.UploadDatasetRequest(chunk=chunk)


_HYPERPARAMETERS = {f.name for f in finetune_pb2.HyperParameters.DESCRIPTOR.fields}


def hyperparameters(values: dict[str, Any]) -> finetune_pb2.HyperParameters:
    unknown = sorted(set(values) - _HYPERPARAMETERS)
    if unknown:
        raise InvalidInput(f"unknown hyper-parameter(s) {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(_HYPERPARAMETERS))}")
    try:
        return finetune_pb2.HyperParameters(**{k: v for k, v in values.items() if v is not None})
    except (TypeError, ValueError) as e:  # a value of the wrong type: say which, in one line
        raise InvalidInput(f"bad hyper-parameter value: {e}") from None
