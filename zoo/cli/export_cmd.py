"""`zoo export MODEL --format openvino|onnx|savedmodel|litert --out DIR [--json]`.

Writes an image model (a registry name or a fine-tuned model) in a format another runtime
loads, checked against the Keras model on real probe images first (zoo.vision.export);
prints where it went, what its input is, and the parity figures. A registry model's file
takes preprocessed input, as the Keras model does; a fine-tuned model's takes raw pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.cli.output import print_json
from zoo.quiet import import_tensorflow
from zoo.vision.export import FORMATS, check_out  # imports no TensorFlow


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("export", help="write an image model for OpenVINO, ONNX, TF Serving "
                                           "or LiteRT, checked against Keras")
    p.add_argument("model", help="registry name, fine-tuned model folder, or recorded name")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, metavar="DIR", help="a new folder to write")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def resolve(name: str) -> tuple[Path | None, tuple[int, int], str | None]:
    """(a fine-tuned model's folder or None for a registry model, its input size, the
    preprocessing its input needs or None); refuses text models before TensorFlow loads."""
    from zoo import finetuned
    from zoo.errors import InvalidInputError
    from zoo.registry import get_spec

    folder = finetuned.resolve(name)
    if folder is not None:
        meta = finetuned.read_meta(folder)
        if meta.get("task") != "image-classification":
            raise InvalidInputError(f"{name} is a {meta.get('task')} model; zoo export writes "
                                    "image models")
        height, width = meta["input"]["size"]
        return folder, (int(height), int(width)), None
    spec = get_spec(name)
    if not spec.is_image or spec.input.size is None:
        raise InvalidInputError(f"{spec.name} is a {spec.task} model; zoo export writes image "
                                "models")
    return None, spec.input.size, spec.input.preprocessing


def run(args: argparse.Namespace) -> int:
    folder, size, mode = resolve(args.model)
    check_out(args.out)  # before seconds of TensorFlow and the model
    import_tensorflow()
    from zoo import finetuned
    from zoo.imagenet import preprocess
    from zoo.models import load_model
    from zoo.vision.export import export

    model = finetuned.load(folder) if folder is not None else load_model(args.model)
    result = export(model, args.format, args.out, size=size,
                    prepare=(lambda pixels: preprocess(pixels, mode)) if mode else None)
    takes = (f"float32 (N, {size[0]}, {size[1]}, 3), "
             + (f"preprocessed ({mode} mode)" if mode else "RGB pixels 0..255"))
    if args.json:
        print_json({**result.to_dict(), "input": takes})
        return 0
    print(f"wrote {result.artifact}")
    print(f"input   {takes}")
    print(f"parity  {result.parity.summary()}: {result.parity.reason}")
    return 0
