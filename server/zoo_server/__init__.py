"""The Zoo gRPC server (zoo.v1): serves every model in the zoo, fine-tunes new ones on
uploaded data, and serves each result the moment it is trained.

    from zoo_server import create_server, ServerConfig
    server, port = create_server("127.0.0.1:0", home="/tmp/zoo", config=ServerConfig())

Started from the command line with `zoo serve`.
"""

from __future__ import annotations

from zoo_server.config import ServerConfig
from zoo_server.server import ZooServer, create_server, serve

__all__ = ["ServerConfig", "ZooServer", "create_server", "serve"]
