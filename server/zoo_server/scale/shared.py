"""The model store every node reaches (`--model-store`): a shared folder or an fsspec URL.

    datasets/<id>/            an uploaded dataset, copied once for jobs on other nodes
    jobs/<id>/checkpoints/    a running job's last checkpoint (resumed from on another node)
    jobs/<id>/out/            a finished job's model folder, until the server registers it
    models/<server>/<name>/<version>-<zoo.json digest>/  a fine-tuned model, for replicas

A folder is complete when its `.complete` marker exists, written after every file, so a
reader never takes half a copy; readers copy into a temporary sibling and rename it into
place. fsspec picks the filesystem from the URL: a path or `file://` is a local (or
mounted, e.g. NFS) folder; `s3://bucket/prefix` needs `pip install s3fs` and the nodes'
usual AWS credentials (environment, instance profile); `gs://`, `az://` likewise.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

MARKER = ".complete"


class SharedStore:
    def __init__(self, url: str):
        import fsspec

        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: Any = fs
        self.root = root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)

    def __reduce__(self) -> tuple[Any, ...]:  # to actors as its URL; they open their own
        return (SharedStore, (self.url,))

    def _path(self, key: str) -> str:
        return f"{self.root}/{key.strip('/')}"

    def has(self, key: str) -> bool:
        return bool(self.fs.exists(f"{self._path(key)}/{MARKER}"))

    def remove(self, key: str) -> None:
        path = self._path(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def put_dir(self, local: Path, key: str, skip: tuple[str, ...] = ()) -> None:
        """Copy folder `local` to `key` (replacing what was there), marker last."""
        self.remove(key)
        target = self._path(key)
        for path in sorted(local.rglob("*")):
            rel = path.relative_to(local)
            if path.is_file() and rel.parts[0] not in skip:
                self.fs.makedirs(f"{target}/{rel.parent.as_posix()}", exist_ok=True)
                self.fs.put_file(str(path), f"{target}/{rel.as_posix()}")
        self.fs.makedirs(target, exist_ok=True)
        self.fs.pipe_file(f"{target}/{MARKER}", b"")

    def get_dir(self, key: str, local: Path) -> Path:
        """The complete folder `key` at `local` (copied once; later calls find it there)."""
        if (local / MARKER).exists():
            return local
        if not self.has(key):
            raise FileNotFoundError(f"{self.url}: {key} is not in the model store")
        source = self._path(key)
        partial = local.with_name(f"{local.name}.{uuid.uuid4().hex[:8]}.incomplete")
        for remote in self.fs.find(source):
            rel = remote[len(source):].lstrip("/")
            (partial / rel).parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(remote, str(partial / rel))
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(partial, local)
        except OSError:  # another process placed it first
            shutil.rmtree(partial, ignore_errors=True)
        return local

    # --- checkpoints: a consistent snapshot of a folder that keeps changing ---------------

    def put_snapshot(self, local: Path, key: str, state: str) -> bool:
        """Copy the files of `local` to `key`, with `state` (the file that says which epoch
        they are) last. The trainer replaces each file by renaming a new one over it, so hard
        links taken in a moment freeze one checkpoint while the copy to the store takes as long
        as it takes; a training epoch shorter than that copy no longer keeps every snapshot
        from landing. False when `state` changed while the links were taken (the caller tries
        again at the next change)."""
        state_path = local / state
        if not state_path.exists():
            return False
        staged = local.parent / f".{local.name}.snapshot-{uuid.uuid4().hex[:8]}"
        staged.mkdir()
        try:
            try:
                before = state_path.read_bytes()
                for path in sorted(local.iterdir()):
                    if path.is_file() and path.name != state and ".tmp" not in path.name:
                        _link_or_copy(path, staged / path.name)
                if state_path.read_bytes() != before:
                    return False
            except FileNotFoundError:  # no checkpoint yet, or one renamed away mid-look
                return False
            target = self._path(key)
            self.fs.makedirs(target, exist_ok=True)
            for path in sorted(staged.iterdir()):
                self.fs.put_file(str(path), f"{target}/{path.name}")
            self.fs.pipe_file(f"{target}/{state}", before)
            return True
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def get_snapshot(self, key: str, local: Path, state: str) -> bool:
        """The snapshot at `key` into `local`; False when there is none."""
        source = self._path(key)
        if not self.fs.exists(f"{source}/{state}"):
            return False
        local.mkdir(parents=True, exist_ok=True)
        for remote in self.fs.ls(source, detail=False):
            name = remote.rstrip("/").rpartition("/")[2]
            if name != state:
                self.fs.get_file(remote, str(local / name))
        self.fs.get_file(f"{source}/{state}", str(local / state))
        return True

    def read_text(self, key: str) -> str | None:
        path = self._path(key)
        try:
            return bytes(self.fs.cat_file(path)).decode("utf-8")
        except (FileNotFoundError, OSError):
            return None


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a filesystem without hard links
        shutil.copy2(source, target)
