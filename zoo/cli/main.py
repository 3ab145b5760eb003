"""Entry point of the `zoo` command: parse, dispatch, and turn errors into one line.

Exit status: 0 on success, 1 on a failure (one line on stderr naming the problem and
the fix), 2 on bad usage. Subcommand modules import TensorFlow only inside the
commands that run a model, so `zoo list|info|fetch|cache` answer in well under a second.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from zoo.cli import (
    cache_cmd,
    embed_cmd,
    export_cmd,
    fetch_cmd,
    finetune_cmd,
    info_cmd,
    jobs_cmd,
    list_cmd,
    predict_cmd,
    serve_cmd,
    similar_cmd,
)
from zoo.errors import ZooError

COMMANDS = (
    list_cmd, info_cmd, fetch_cmd, cache_cmd, finetune_cmd, predict_cmd, embed_cmd, similar_cmd,
    jobs_cmd, serve_cmd, export_cmd,
)


class _Parser(argparse.ArgumentParser):
    """argparse, with two fixes every command gets.

    Errors are one line naming the problem and pointing at the help (exit 2). A command's
    flags may come anywhere among its positional arguments (`zoo predict M --json a.png
    b.png`): a subcommand without subcommands of its own parses intermixed, as
    `parse_intermixed_args` does.
    """

    _intermixing = False

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back into this method
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="zoo",
        description="Pretrained Keras models with verified weights: list, fetch, fine-tune, serve.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is tried")
    parser.add_argument("--server", default=os.environ.get("ZOO_SERVER") or None,
                        metavar="HOST:PORT",
                        help="run list/predict/finetune/jobs on a Zoo server (env ZOO_SERVER)")
    parser.add_argument("--token", default=os.environ.get("ZOO_TOKEN") or None,
                        help="bearer token for --server (env ZOO_TOKEN)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds each call to --server may take (default 60)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up banner is noise on a command line; warnings still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="zoo: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args))
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0  # `zoo list | head`


if __name__ == "__main__":
    sys.exit(main())
