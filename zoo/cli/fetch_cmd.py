"""`zoo fetch NAME... [--no-top] [--all] [--json]`: bring verified weights into the cache.

Progress bars go to stderr; stdout gets one cached path per line (or JSON), so
`zoo fetch resnet50` composes in scripts.
"""

from __future__ import annotations

import argparse

from zoo.cli.output import print_json, progress_for
from zoo.errors import InvalidInputError
from zoo.hub.fetch import SOURCES, fetch_weights
from zoo.hub.registry import get_spec, list_models


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("fetch", help="download and verify model weights")
    parser.add_argument("names", nargs="*", metavar="NAME", help="registered model names")
    parser.add_argument("--no-top", action="store_true", help="the feature extractor without its classifier")
    parser.add_argument("--all", action="store_true", help="every registered model")
    parser.add_argument("--source", choices=SOURCES, help="text models: fetch from this source only")
    parser.add_argument("--json", action="store_true", help="print a JSON array of fetched files")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.all and args.names:
        raise InvalidInputError("give model names or --all, not both")
    if not args.all and not args.names:
        raise InvalidInputError("name at least one model to fetch (or --all); see `zoo list`")
    names = [s.name for s in list_models()] if args.all else [get_spec(n).name for n in args.names]
    results = []
    for name in names:
        bar = progress_for(name, quiet=args.quiet)
        try:
            path = fetch_weights(name, include_top=not args.no_top, source=args.source, progress=bar)
        finally:
            bar.close()
        results.append({"name": name, "path": str(path)})
        if not args.json:
            print(path, flush=True)
    if args.json:
        print_json(results)
    return 0
