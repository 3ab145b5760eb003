"""A static file server standing in for storage.googleapis.com, where Keras keeps its weights.

In process: `with StaticServer(root) as server: server.url_for("resnet50.h5")`.
Out of process: `python -m tests.servers.static --root DIR --port 0` prints its base URL
as the first stdout line (or use `ServerProcess("static", "--root", DIR)`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

from .base import (
    BaseHandler,
    Blob,
    Fault,
    LocalServer,
    RequestRecord,
    ServerProcess,
    cli_parser,
    serve_until_signalled,
)

__all__ = ["Fault", "RequestRecord", "ServerProcess", "StaticServer"]


class StaticHandler(BaseHandler):
    server_version = "ZooStatic/1"
    app: StaticServer  # type: ignore[assignment]

    def route(self, path: str, query: str) -> None:
        rel = unquote(path).lstrip("/")
        file = self.app.file_for(rel)
        if file is None:
            self.send_json({"error": f"{rel} not found"}, 404)
            return
        stat = file.stat()
        # Like nginx: cheap to compute even for the 200 MB benchmark file.
        self.send_blob(rel, Blob(file), {"ETag": f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'})


class StaticServer(LocalServer):
    """Serves the files under `root` at their relative paths; those paths are the fault keys."""

    handler_class = StaticHandler

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.root = Path(root).resolve()

    def url_for(self, rel: str) -> str:
        return f"{self.url}/{quote(rel)}"

    def file_for(self, rel: str) -> Path | None:
        """The file served at `rel`; None if missing, a folder, or outside the root."""
        path = (self.root / rel).resolve()
        return path if path.is_relative_to(self.root) and path.is_file() else None


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser(__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="folder to serve")
    args = parser.parse_args(argv)
    serve_until_signalled(StaticServer(args.root, args.host, args.port))


if __name__ == "__main__":
    main()
