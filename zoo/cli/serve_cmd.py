"""`zoo serve [--host H] [--port P] [--home DIR] [--preload NAME ...] [...]`: the server.

The flags are the server's own (zoo_server.cli, made from ServerConfig): every flag has an
environment variable, `ZOO_SERVE_<FLAG>` with dashes as underscores, except `--token`
(`ZOO_TOKEN`) and `--home` (`ZOO_HOME`). Flags win over the environment.
"""

from __future__ import annotations

import argparse

from zoo_server import cli as server_cli


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "serve", help="run the gRPC server: inference, fine-tune jobs, model store",
        description=server_cli.DESCRIPTION)
    server_cli.add_arguments(p)
    p.set_defaults(run=server_cli.run)
