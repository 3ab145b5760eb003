"""A Hugging Face Hub stand-in that `huggingface_hub` (2.4) downloads from via `endpoint=`.

It answers what hf_hub_download, snapshot_download, model_info, list_repo_files and
list_repo_tree send:

    GET      /api/models/{repo}[/revision/{rev}]        repo info: sha, siblings
    GET      /api/models/{repo}/tree/{rev}[/{path}]     listing (?recursive=true)
    HEAD|GET /{repo}/resolve/{rev}/{path}              file bytes and metadata headers

Files of `lfs_threshold` bytes or more look like LFS files: ETag and X-Linked-Etag are
their sha256 (huggingface_hub names the cached blob after it), X-Linked-Size their size,
and listings carry `lfs`. Xet is never advertised (no X-Xet-Hash header, no `xetHash` in
listings), so huggingface_hub takes its plain-HTTP download path even with hf_xet
installed. Files are served directly rather than redirected to a CDN host.

Out of process: `python -m tests.servers.hub --repo org/name=DIR [--token org/name=TOKEN]
--port 0` prints its base URL as the first stdout line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from .base import (
    CHUNK_SIZE,
    BaseHandler,
    Blob,
    Fault,
    LocalServer,
    RequestRecord,
    ServerProcess,
    cli_parser,
    serve_until_signalled,
)

__all__ = ["Fault", "HubServer", "RequestRecord", "ServerProcess"]

_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"  # "org/name", or a legacy un-namespaced "name"
_API = re.compile(rf"/api/models/{_REPO}(?:/(?P<op>revision|tree)/(?P<rev>[^/]+)(?P<path>/.*)?)?")
_RESOLVE = re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)")
_SHA = re.compile(r"[0-9a-f]{40}")
_LAST_MODIFIED = "2024-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class HubFile:
    """One file of a commit, with the ids the Hub reports for it."""

    path: str
    blob: Blob
    size: int
    oid: str  # git blob sha1; of the LFS pointer file for LFS files, as on the Hub
    sha256: str
    lfs: bool
    pointer_size: int

    @classmethod
    def build(cls, path: str, source: Path | bytes, lfs_threshold: int) -> HubFile:
        blob = Blob(source)
        size = blob.size
        git, sha256 = hashlib.sha1(f"blob {size}\0".encode()), hashlib.sha256()
        with blob.open() as f:
            while chunk := f.read(CHUNK_SIZE):
                git.update(chunk)
                sha256.update(chunk)
        pointer = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256.hexdigest()}\n"
            f"size {size}\n"
        ).encode()
        lfs = size >= lfs_threshold
        if lfs:
            git = hashlib.sha1(f"blob {len(pointer)}\0".encode() + pointer)
        return cls(path, blob, size, git.hexdigest(), sha256.hexdigest(), lfs, len(pointer))

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "file",
            "oid": self.oid,
            "size": self.size,
            "path": self.path,
        }
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return entry

    def sibling(self, blobs: bool) -> dict[str, Any]:
        """The `siblings` entry of the repo info; sizes and ids only with `?blobs=true`."""
        if not blobs:
            return {"rfilename": self.path}
        sibling: dict[str, Any] = {"rfilename": self.path, "size": self.size, "blobId": self.oid}
        if self.lfs:
            sibling["lfs"] = {
                "sha256": self.sha256,
                "size": self.size,
                "pointerSize": self.pointer_size,
            }
        return sibling


@dataclass
class HubRepo:
    repo_id: str
    default_branch: str
    token: str | None = None
    gated: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)  # sha -> path -> file

    def resolve(self, revision: str) -> str | None:
        """The commit sha a branch name or full sha stands for."""
        return self.refs.get(revision) or (revision if revision in self.commits else None)


class HubError(Exception):
    """An error answer in the Hub's format: huggingface_hub maps X-Error-Code to its exceptions."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit

    def headers(self) -> dict[str, str]:
        headers = {"X-Error-Message": self.message}
        if self.code:
            headers["X-Error-Code"] = self.code
        if self.commit:
            headers["X-Repo-Commit"] = self.commit  # lets huggingface_hub cache the miss
        return headers


class HubHandler(BaseHandler):
    server_version = "ZooHub/1"
    app: HubServer  # type: ignore[assignment]

    def route(self, path: str, query: str) -> None:
        try:
            if match := _API.fullmatch(path):
                self._api(match, parse_qs(query))
            elif match := _RESOLVE.fullmatch(path):
                self._resolve(match)
            else:
                raise HubError(404, None, f"no such endpoint: {unquote(path)}")
        except HubError as error:
            self.send_json({"error": error.message}, error.status, error.headers())

    def _lookup(self, repo_id: str, revision: str | None) -> tuple[HubRepo, str]:
        """The repo and the commit sha of `revision`, if this request may see them."""
        repo = self.app.repo(unquote(repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", "Repository not found")
        auth = self.headers.get("Authorization")
        if repo.token is not None and auth != f"Bearer {repo.token}":
            # What the Hub answers: huggingface_hub raises GatedRepoError on "GatedRepo",
            # RepositoryNotFoundError on "RepoNotFound", a plain 401 HfHubHTTPError otherwise.
            if repo.gated:
                raise HubError(401 if auth is None else 403, "GatedRepo", "Access is restricted")
            if auth is None:
                raise HubError(401, "RepoNotFound", "Invalid username or password.")
            raise HubError(401, None, "Invalid credentials in Authorization header")
        revision = unquote(revision) if revision else repo.default_branch
        sha = repo.resolve(revision)
        if sha is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo, sha

    def _api(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
        repo, sha = self._lookup(match["repo"], match["rev"])
        files = repo.commits[sha]
        if match["op"] == "tree":
            prefix = unquote(match["path"] or "").strip("/")
            self.send_json(_tree(files, prefix, _flag(query, "recursive")))
        elif match["path"]:
            raise HubError(404, None, f"no such endpoint: {unquote(self.path)}")
        else:
            self.send_json(
                {
                    "id": repo.repo_id,
                    "modelId": repo.repo_id,
                    "sha": sha,
                    "private": repo.token is not None,
                    "gated": "manual" if repo.gated else False,
                    "disabled": False,
                    "lastModified": _LAST_MODIFIED,
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                    "siblings": [f.sibling(_flag(query, "blobs")) for f in files.values()],
                }
            )

    def _resolve(self, match: re.Match[str]) -> None:
        repo, sha = self._lookup(match["repo"], match["rev"])
        path = unquote(match["path"])
        file = repo.commits[sha].get(path)
        if file is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {sha}", commit=sha)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{file.etag}"'}
        if file.lfs:
            headers["X-Linked-Etag"] = f'"{file.sha256}"'
            headers["X-Linked-Size"] = str(file.size)
        self.send_blob(f"{repo.repo_id}/{path}", file.blob, headers)


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in ("1", "true")


def _tree(files: Mapping[str, HubFile], prefix: str, recursive: bool) -> list[dict[str, Any]]:
    """The /tree listing of folder `prefix`: its entries, or everything below it if `recursive`."""
    below = {p: f for p, f in files.items() if not prefix or p.startswith(prefix + "/")}
    if prefix and not below:
        raise HubError(404, "EntryNotFound", f"{prefix} is not a folder")
    depth = prefix.count("/") + 1 if prefix else 0
    folders: set[str] = set()
    entries = []
    for path, file in sorted(below.items()):
        parts = path.split("/")
        parents = ["/".join(parts[:i]) for i in range(depth + 1, len(parts))]
        folders.update(parents if recursive else parents[:1])
        if recursive or len(parts) == depth + 1:
            entries.append(file.tree_entry())
    return [
        {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
        for d in sorted(folders)
    ] + entries


class HubServer(LocalServer):
    """A Hub with the repos given to add_repo; fault keys are "org/name/path/in/repo"."""

    handler_class = HubHandler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._repos: dict[str, HubRepo] = {}

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, Path | bytes],
        *,
        revision_sha: str | None = None,
        branch: str = "main",
        token: str | None = None,
        gated: bool = False,
        lfs_threshold: int = 1 << 20,
    ) -> str:
        """Publish `files` (repo path -> file or bytes) as a commit and point `branch` at it.

        Adding to an existing repo makes another commit: the branch moves, older shas stay
        downloadable. `token` makes the repo private: requests need `Authorization: Bearer
        <token>`; `gated` makes those without it fail as for a gated repo instead.
        Returns the commit sha, derived from the content unless `revision_sha` is given.
        """
        if gated and token is None:
            raise ValueError("a gated repo needs the token that unlocks it")
        built = {path: HubFile.build(path, source, lfs_threshold) for path, source in files.items()}
        sha = (
            revision_sha
            or hashlib.sha1(
                json.dumps(sorted((p, f.oid) for p, f in built.items())).encode()
            ).hexdigest()
        )
        if not _SHA.fullmatch(sha):
            raise ValueError(f"revision_sha must be 40 lowercase hex digits, got {sha!r}")
        with self._lock:
            repo = self._repos.setdefault(repo_id, HubRepo(repo_id, default_branch=branch))
            repo.commits[sha] = built
            repo.refs[branch] = sha
            if token is not None:
                repo.token, repo.gated = token, gated
        return sha

    def repo(self, repo_id: str) -> HubRepo | None:
        with self._lock:
            return self._repos.get(repo_id)


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="ORG/NAME=DIR",
        help="publish every file under DIR as ORG/NAME on branch main (repeatable)",
    )
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="ORG/NAME=TOKEN",
        help="make ORG/NAME private, readable with TOKEN (repeatable)",
    )
    parser.add_argument("--lfs-threshold", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    tokens = dict(spec.split("=", 1) for spec in args.token)
    server = HubServer(args.host, args.port)
    for spec in args.repo:
        repo_id, folder = spec.split("=", 1)
        root = Path(folder)
        files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        server.add_repo(repo_id, files, token=tokens.get(repo_id), lfs_threshold=args.lfs_threshold)
    serve_until_signalled(server)


if __name__ == "__main__":
    main()
