"""Which models the server serves, and where their files are.

Three sources, looked up in this order for a name:

1. The server's store, ZOO_HOME/models/<name>/<version>/: the results of fine-tune jobs,
   each a normal Zoo model directory (zoo.json + model.keras), versions 1, 2, ...
2. Models made by `zoo finetune` (the index `zoo list --local` reads): each is served as
   version 1 of the name it was recorded under, unless the store already has that name
   (the store wins; jobs cannot take a registry name, see CreateJob).
3. The registry: pretrained models; they have no versions (version 0), any requested
   version is ignored.

Version 0 in a request means the latest version.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import model_dir
from zoo.errors import InvalidInputError, ModelNotFoundError
from zoo.hub.registry import get_spec, list_models
from zoo.hub.spec import ModelSpec
from zoo.refs import ModelRef, registry
from zoo_server.names import check_lookup_name, check_output_name, is_storable

REGISTRY = "registry"
FINETUNED = "finetuned"


@dataclass(frozen=True)
class Resolved:
    """One servable model: a registry spec, or a fine-tuned model directory."""

    name: str
    version: int  # 0 for registry models
    origin: str  # REGISTRY or FINETUNED
    task: str
    spec: ModelSpec | None  # the registry spec (for fine-tuned models: their base's, if known)
    path: Path | None = None  # fine-tuned: the model directory
    meta: dict[str, Any] | None = None  # fine-tuned: zoo.json

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def is_image(self) -> bool:
        return self.task == "image-classification"

    @property
    def image_size(self) -> tuple[int, int] | None:
        if self.meta is not None:
            size = (self.meta.get("input") or {}).get("size")
            return (int(size[0]), int(size[1])) if size else None
        return self.spec.input.size if self.spec is not None else None

    @property
    def labels(self) -> list[str] | None:
        return list(self.meta["labels"]) if self.meta is not None else None

    @property
    def num_classes(self) -> int | None:
        if self.meta is not None:
            return len(self.meta["labels"])
        return self.spec.head.num_classes if self.spec is not None else None

    def describe(self) -> str:
        return f"{self.name} version {self.version}" if self.version else self.name

    @property
    def ref(self) -> ModelRef:
        """The library's resolved form of this model, which loaders hand to zoo as it is."""
        if self.spec is None:
            base = (self.meta or {}).get("base")
            raise ModelNotFoundError(f"{self.describe()} was fine-tuned from {base!r}, which "
                                     "this server's version of Zoo does not know")
        if self.path is None:
            return registry(self.spec)
        return ModelRef(self.name, self.spec, self.path, self.meta)


class ModelStore:
    def __init__(self, home: Path):
        self.home = home
        self.root = home / "models"
        self._lock = threading.Lock()
        self._index_cache: tuple[float, dict[str, Path]] | None = None
        self._meta_cache: dict[Path, tuple[int, dict[str, Any]]] = {}

    # --- the server's own versions ---------------------------------------------------------

    def versions(self, name: str) -> list[int]:
        if not is_storable(name):
            return []
        folder = self.root / name
        try:
            entries = list(folder.iterdir())
        except OSError:
            return []
        return sorted(int(p.name) for p in entries
                      if p.name.isdigit() and model_dir.is_model_dir(p))

    def register(self, folder: Path, name: str) -> int:
        """Move a finished job's model directory into the store as the next version of
        `name`; atomic (one rename), so a model is either fully there or not at all."""
        check_output_name(name)
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        with self._lock:
            versions = self.root / name
            versions.mkdir(parents=True, exist_ok=True)
            taken = [int(p.name) for p in versions.iterdir() if p.name.isdigit()]
            version = max(taken, default=0) + 1
            os.replace(folder, self.root / name / str(version))
        return version

    # --- models made by `zoo finetune` -----------------------------------------------------

    def _local(self) -> dict[str, Path]:
        index = model_dir.index_path()
        try:
            mtime = index.stat().st_mtime
        except OSError:
            return {}
        if self._index_cache is None or self._index_cache[0] != mtime:
            rows = model_dir.list_local()
            self._index_cache = (mtime, {row["name"]: Path(row["path"]) for row in rows})
        return self._index_cache[1]

    # --- resolution ------------------------------------------------------------------------

    def _meta(self, path: Path) -> dict[str, Any]:
        """zoo.json, parsed once per file version (requests resolve models all the time)."""
        try:
            mtime = (path / model_dir.META_FILE).stat().st_mtime_ns
        except OSError:
            mtime = -1
        cached = self._meta_cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        meta = model_dir.read_meta(path)
        self._meta_cache[path] = (mtime, meta)
        return meta

    def _finetuned(self, name: str, version: int, path: Path) -> Resolved:
        meta = self._meta(path)
        base = meta.get("base")
        try:
            spec = get_spec(base) if isinstance(base, str) else None
        except ModelNotFoundError:
            spec = None
        return Resolved(name, version, FINETUNED, str(meta.get("task") or "image-classification"),
                        spec, path, meta)

    def resolve(self, name: str, version: int = 0) -> Resolved:
        name = check_lookup_name(name)
        if version < 0:
            raise InvalidInputError(f"model version must be 0 (latest) or positive, got {version}")
        versions = self.versions(name)
        if versions:
            chosen = versions[-1] if version == 0 else version
            if chosen not in versions:
                raise ModelNotFoundError(
                    f"model {name!r} has no version {version} (versions: "
                    f"{', '.join(map(str, versions))}; 0 means the latest)")
            return self._finetuned(name, chosen, self.root / name / str(chosen))
        local = self._local().get(name)
        if local is not None:
            if version not in (0, 1):
                raise ModelNotFoundError(
                    f"model {name!r} (made by `zoo finetune`) has only version 1, not {version}")
            return self._finetuned(name, 1, local)
        spec = get_spec(name)
        return Resolved(spec.name, 0, REGISTRY, spec.task, spec)

    def list(self, pattern: str = "*", task: str | None = None) -> list[Resolved]:
        """Every servable model whose name matches `pattern`: each version of a fine-tuned
        model, then the registry, sorted by name."""
        found: list[Resolved] = []
        stored: set[str] = set()
        try:
            names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        except OSError:
            names = []
        for name in names:
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            for version in self.versions(name):
                stored.add(name)
                found.append(self._finetuned(name, version, self.root / name / str(version)))
        for name, path in sorted(self._local().items()):
            if name not in stored and fnmatch.fnmatchcase(name, pattern):
                try:
                    found.append(self._finetuned(name, 1, path))
                except InvalidInputError:
                    continue
        found.extend(Resolved(s.name, 0, REGISTRY, s.task, s) for s in list_models(pattern.lower()))
        found = [m for m in found if task is None or m.task == task]
        return sorted(found, key=lambda m: (m.name, m.version))
