"""`zoo predict MODEL IMAGE... [--top-k 5] [--json]`: classify images.

MODEL is a registry name (ImageNet classes), a fine-tuned model's folder, or the name
it was recorded under.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zoo.cli import remote
from zoo.cli.output import print_json
from zoo.errors import InvalidInputError
from zoo.quiet import import_tensorflow


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("predict", help="classify images with a registered or fine-tuned model")
    p.add_argument("model", help="registry name, fine-tuned model folder, or recorded name")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    p.add_argument("--text", nargs="+", metavar="TEXT", help="texts, for a fine-tuned text classifier")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def show(args: argparse.Namespace, kind: str, inputs: list[str], results: list[Any]) -> int:
    """Print each input's predictions, as JSON objects keyed by `kind` or as indented lines."""
    if args.json:
        print_json([{kind: item, "predictions": [asdict(p) for p in preds]}
                    for item, preds in zip(inputs, results, strict=True)])
        return 0
    for item, preds in zip(inputs, results, strict=True):
        print(f"{item}:")
        for p in preds:
            print(f"  {p.score:7.2%}  {p.label}")
    return 0


def run_text(args: argparse.Namespace) -> int:
    if args.server:
        with remote.client(args) as zoo:
            results = zoo.classify_text(args.model, args.text, top_k=args.top_k)
    else:
        import_tensorflow()
        from zoo.text.classifier import TextClassifier

        results = TextClassifier.load(args.model).classify(args.text, top_k=args.top_k)
    return show(args, "text", args.text, results)


def run(args: argparse.Namespace) -> int:
    if args.text and args.images:
        raise InvalidInputError("give images or --text, not both")
    if args.text:
        return run_text(args)
    if not args.images:
        raise InvalidInputError("name at least one image (or --text for a text classifier)")
    missing = [image for image in args.images if not Path(image).is_file()]
    if missing:  # before paying for TensorFlow and the model
        raise InvalidInputError(f"{missing[0]}: no such file")
    if args.server:
        with remote.client(args) as zoo:
            results = zoo.classify(args.model, args.images, top_k=args.top_k)
    else:
        import_tensorflow()
        from zoo.vision.classifier import classifier

        results = classifier(args.model).classify(args.images, top_k=args.top_k)
    return show(args, "image", args.images, results)
