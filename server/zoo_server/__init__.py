"""The Zoo gRPC server (zoo.v1): serves every model in the zoo, fine-tunes new ones on
uploaded data, and serves each result the moment it is trained.

    from zoo_server import create_server, ServerConfig
    server, port = create_server("127.0.0.1:0", home="/tmp/zoo", config=ServerConfig())

Started from the command line with `zoo serve` (or `python -m zoo_server`). Importing the
package is cheap: gRPC loads with `create_server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo_server.config import ServerConfig

if TYPE_CHECKING:
    from zoo_server.server import ZooServer, create_server, serve

_LAZY = {"ZooServer": "zoo_server.server", "create_server": "zoo_server.server",
         "serve": "zoo_server.server"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo_server' has no attribute {name!r}")


__all__ = ["ServerConfig", "ZooServer", "create_server", "serve"]
