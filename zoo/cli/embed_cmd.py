"""`zoo embed MODEL (--text T... | --file F) [--json] [--batch-size N] [--no-normalize]`.

One embedding per text. For people, one line per text: its dimension, the first values
and the text. With `--json`, a JSON array with one object per line for scripts:
`{"index", "text", "embedding"}` (and `"line"` for texts read from a file). Truncated
texts are reported on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from zoo.cli.text_input import add_text_source, positive_int, texts_of
from zoo.quiet import import_tensorflow

SHOWN = 4  # values shown per text without --json


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("embed", help="sentence embeddings of texts")
    parser.add_argument("model", help="a registered text model, e.g. minilm_l6_v2")
    add_text_source(parser, required=True, what="texts to embed")
    parser.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    parser.add_argument(
        "--no-normalize", action="store_true", help="raw pooled vectors, not unit length"
    )
    parser.add_argument("--json", action="store_true", help="print the full vectors as JSON")
    parser.set_defaults(run=run)


def vector_json(vector: Any) -> list[float]:
    return [float(f"{x:.8g}") for x in vector.tolist()]


def shorten(text: str, width: int = 60) -> str:
    """One display line: whitespace runs as single spaces, long texts cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_rows(rows: list[dict[str, Any]]) -> None:
    """A JSON array, one object per line: valid JSON that `grep` and people can still read."""
    sys.stdout.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n")


def run(args: argparse.Namespace) -> int:
    texts, lines = texts_of(args)  # bad files fail here, before TensorFlow loads
    import_tensorflow()  # its start-up banner would bury a one-line error
    from zoo.text.encoder import embed

    vectors = embed(args.model, texts, batch_size=args.batch_size, normalize=not args.no_normalize)
    if args.json:
        rows = []
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            row: dict[str, Any] = {"index": i, "text": text}
            if lines is not None:
                row["line"] = lines[i]
            row["embedding"] = vector_json(vector)
            rows.append(row)
        print_rows(rows)
        return 0
    for text, vector in zip(texts, vectors, strict=True):
        values = " ".join(f"{x:+.4f}" for x in vector[:SHOWN])
        print(f"[{len(vector)}] {values} ...  {shorten(text)}")
    return 0
