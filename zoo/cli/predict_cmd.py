"""`zoo predict MODEL IMAGE... | --text TEXT... | --file FILE [--top-k K] [--json]`.

MODEL is a registry name (ImageNet classes), a fine-tuned model's folder, or the name
it was recorded under. `--top-k` defaults to min(5, classes); a larger one is clamped.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zoo.cli import remote
from zoo.cli.output import print_json
from zoo.cli.text_input import add_text_source, positive_int, texts_of
from zoo.errors import InvalidInputError
from zoo.quiet import import_tensorflow
from zoo.vision.runtimes import CHOICES, TF


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("predict", help="classify images or texts with a registered or "
                                            "fine-tuned model")
    p.add_argument("model", help="registry name, fine-tuned model folder, or recorded name")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    add_text_source(p, required=False, what="texts, for a fine-tuned text classifier "
                                             "(repeat --text to add more)")
    p.add_argument("--top-k", type=positive_int, metavar="K",
                   help="predictions per input (default: 5, or the number of classes if fewer)")
    p.add_argument("--runtime", choices=CHOICES, default=TF,
                   help="what runs an image model: tf (default), openvino (f32), openvino-bf16 "
                        "(gated on accuracy), or auto (measures each at load: seconds, worth "
                        "it for many images)")
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


def run_text(args: argparse.Namespace, texts: list[str]) -> int:
    if args.server:
        with remote.client(args) as zoo:
            results = zoo.classify_text(args.model, texts, top_k=args.top_k or 0)
    else:
        import_tensorflow()
        from zoo.text.classifier import TextClassifier

        results = TextClassifier.load(args.model).classify(texts, top_k=args.top_k)
    return show(args, "text", texts, results)


def run(args: argparse.Namespace) -> int:
    texts, _ = texts_of(args)  # a bad --file fails here, before TensorFlow loads
    if texts and args.images:
        raise InvalidInputError("give images or --text/--file, not both")
    if texts:
        return run_text(args, texts)
    if not args.images:
        raise InvalidInputError("name at least one image (or --text/--file for a text "
                                "classifier)")
    missing = [image for image in args.images if not Path(image).is_file()]
    if missing:  # before paying for TensorFlow and the model
        raise InvalidInputError(f"{missing[0]}: no such file")
    if args.server:
        with remote.client(args) as zoo:
            results = zoo.classify(args.model, args.images, top_k=args.top_k or 0)
    else:
        import_tensorflow()
        from zoo.vision.classifier import load_classifier

        classifier = load_classifier(args.model, args.runtime)
        results = classifier.classify(args.images, top_k=args.top_k)
        if args.runtime != TF:
            print(f"zoo: runtime {classifier.report.summary()}", file=sys.stderr)
    return show(args, "image", args.images, results)
