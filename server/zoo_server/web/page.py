"""The web page: static files shipped in the package, and the one JSON document it needs
besides the zoo.v1 bridge (what a form must offer: the hyper-parameters' schema, dataset
formats, limits).

    GET /                      the page (index.html); plain ES modules, no build step
    GET /static/...            its scripts, styles and sample photo (open, like /)
    GET /api/web/settings      the form's schema and the server's limits (behind the token)

The page itself holds nothing secret, so it loads without the token (a user has to be able
to type one); every call it makes goes through the bearer-token check like any client's.
Responses carry a Content-Security-Policy that allows only this server's own scripts,
styles and connections, and forbid framing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zoo.finetuning.hyperparameters import schema
from zoo.hub.spec import TASKS
from zoo_server.config import ServerConfig
from zoo_server.datasets import FORMATS, IMAGE_FORMATS, SUFFIXES

STATIC = Path(__file__).resolve().parent / "static"
SETTINGS_PATH = "/api/web/settings"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def public_paths() -> tuple[str, ...]:
    """The page's own files: what loads without the token."""
    files = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())
    return ("/", *(f"/static/{name}" for name in files))


class WithHeaders:
    """ASGI middleware for the page's responses: the security headers above."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with)


def settings_json(config: ServerConfig, version: str) -> dict[str, Any]:
    return {
        "version": version,
        "hyperparameters": schema(),
        "dataset_formats": [{"name": name, "suffixes": list(SUFFIXES[name]),
                             "images": name in IMAGE_FORMATS} for name in FORMATS],
        "tasks": list(TASKS),
        "max_upload_bytes": config.max_upload_bytes,
        "max_message_bytes": config.max_message_bytes,
    }


def routes(config: ServerConfig, version: str) -> list[BaseRoute]:
    document = settings_json(config, version)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={**HEADERS, "Cache-Control": "no-cache"})

    async def settings(request: Request) -> Response:
        return JSONResponse(document)

    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Mount("/static", app=WithHeaders(StaticFiles(directory=STATIC), HEADERS)),
        Route(SETTINGS_PATH, settings, methods=["GET"]),
    ]


__all__ = ["HEADERS", "SETTINGS_PATH", "STATIC", "public_paths", "routes", "settings_json"]
