"""`zoo serve` / `python -m zoo_server`: the server's command line, made from ServerConfig.

Every ServerConfig field is a flag (`--max-batch-size`, ...) with the help line and group
it is declared with; unset flags fall through to `ZOO_SERVE_<NAME>`, then the default.
Importing this module is cheap: gRPC and TensorFlow load only when the server starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo_server.config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig, parse, settings, value_type

DESCRIPTION = ("Serve every model in the zoo over gRPC (zoo.v1, and the Open Inference Protocol "
               "that Triton and KServe clients speak; over HTTP too with --http-port), fine-tune "
               "new ones on uploaded data and serve each result as soon as it is trained. Stops "
               "gracefully on SIGTERM/SIGINT.")


def flag_of(f: Any) -> str:
    return str(f.metadata.get("flag") or "--" + f.name.replace("_", "-"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 "
                                       "for all, which needs a token or --insecure)")
    parser.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; 0: any free "
                                                 "port)")
    parser.add_argument("--home", type=Path, help="cache, model store, datasets, jobs and "
                                                  "server.db (default: $ZOO_HOME, else "
                                                  "~/.cache/zoo)")
    groups: dict[str, Any] = {}
    for f in settings():
        group = groups.get(f.metadata["group"])
        if group is None:
            group = groups[f.metadata["group"]] = parser.add_argument_group(f.metadata["group"])
        default = "off" if f.default is None else f.default
        past = f"; past it {f.metadata['past']}" if f.metadata.get("past") else ""
        help_line = f"{f.metadata['help']}{past} (default {default}; env {env_name(f)})"
        if value_type(f.name) is tuple:
            group.add_argument(flag_of(f), dest=f.name, nargs="+", action="extend",
                               metavar="NAME", help=help_line)
        elif value_type(f.name) is bool:
            group.add_argument(flag_of(f), dest=f.name, action="store_const", const=True,
                               default=None, help=f"{f.metadata['help']} (env {env_name(f)})")
        else:
            group.add_argument(flag_of(f), dest=f.name, choices=f.metadata.get("choices"),
                               type=_typed(f.name, flag_of(f)), help=help_line)


def env_name(f: Any) -> str:
    from zoo_server.config import env_var

    return env_var(f.name)


def _typed(name: str, flag: str) -> Any:
    def convert(raw: str) -> Any:
        try:
            return parse(name, raw, flag)
        except ZooError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def config_of(args: argparse.Namespace) -> ServerConfig:
    """ServerConfig from the flags given, then the environment, then the defaults."""
    overrides = {f.name: getattr(args, f.name, None) for f in settings()}
    preload = overrides.get("preload")
    if preload is not None:
        overrides["preload"] = tuple(preload)
    return ServerConfig.from_env(**overrides)


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    host = args.host or os.environ.get("ZOO_SERVE_HOST") or DEFAULT_HOST
    port = args.port if args.port is not None else int(os.environ.get("ZOO_SERVE_PORT")
                                                        or DEFAULT_PORT)
    from zoo_server.server import address_of, check_free, serve

    config.check_exposure(host)  # bad settings and a taken port fail before TF loads
    check_free(address_of(host, port))
    if config.http_port is not None:
        check_free(address_of(host, config.http_port), "--http-port")
    if config.ray is not None:
        from zoo_server.scale.install import require_ray

        require_ray()
    from zoo.quiet import import_tensorflow

    import_tensorflow()
    code = serve(host, port, home=args.home, config=config)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # handler threads of calls cut off by the grace period must not keep us


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="python -m zoo_server", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ZooError as e:
        print(f"zoo serve: error: {e}", file=sys.stderr)
        return 1
