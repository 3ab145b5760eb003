"""`zoo similar MODEL QUERY --file F [--top-k K] [--json]`: a file's lines ranked by
cosine similarity of their embeddings to QUERY's, best first.

For people, a table of score, line number and text; with `--json`, an array of
`{"rank", "score", "line", "text"}`.
"""

from __future__ import annotations

import argparse

from zoo.cli.embed_cmd import shorten
from zoo.cli.output import print_json, print_table
from zoo.cli.text_input import positive_int, read_lines
from zoo.quiet import import_tensorflow


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("similar", help="rank a file's lines by similarity to a query")
    parser.add_argument("model", help="a registered text model, e.g. minilm_l6_v2")
    parser.add_argument("query", help="the text to compare every line with")
    parser.add_argument(
        "--file", required=True, metavar="FILE",
        help="a UTF-8 file, one candidate per non-empty line ('-': stdin)",
    )
    parser.add_argument(
        "--top-k", type=positive_int, default=10, metavar="K", help="show the best K (default 10)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    lines = read_lines(args.file)  # bad files fail here, before TensorFlow loads
    import_tensorflow()  # its start-up banner would bury a one-line error
    from zoo.text.encoder import most_similar

    matches = most_similar(
        args.model, args.query, [text for _, text in lines],
        top_k=args.top_k, batch_size=args.batch_size,
    )
    rows = [
        {"rank": rank, "score": round(m.score, 6), "line": lines[m.index][0], "text": m.text}
        for rank, m in enumerate(matches, start=1)
    ]
    if args.json:
        print_json(rows)
    else:
        table = [[f"{m.score:.4f}", lines[m.index][0], shorten(m.text, 100)] for m in matches]
        print_table(["SCORE", "LINE", "TEXT"], table)
    return 0
