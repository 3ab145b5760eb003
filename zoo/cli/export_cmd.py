"""`zoo export MODEL --format openvino|onnx|savedmodel|litert --out DIR [--json]`.

Writes an image model (a registry name or a fine-tuned model) in a format another runtime
loads, checked against the Keras model on real probe images first (zoo.vision.export);
prints where it went, what its input is, and the parity figures. A registry model's file
takes preprocessed input, as the Keras model does; a fine-tuned model's takes raw pixels.
"""

from __future__ import annotations

import argparse

from zoo.cli.output import print_json
from zoo.errors import InvalidInputError
from zoo.quiet import import_tensorflow
from zoo.refs import ModelRef, resolve
from zoo.vision.export import FORMATS, check_out  # imports no TensorFlow


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("export", help="write an image model for OpenVINO, ONNX, TF Serving "
                                           "or LiteRT, checked against Keras")
    p.add_argument("model", help="registry name, fine-tuned model folder, or recorded name")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, metavar="DIR", help="a new folder to write")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def image_ref(name: str) -> ModelRef:
    """The image model `name` means, resolved once; text models are refused before
    TensorFlow loads."""
    ref = resolve(name)
    if not ref.is_image or ref.image_size is None:
        raise InvalidInputError(f"{ref.name} is a {ref.task} model; zoo export writes image "
                                "models")
    return ref


def run(args: argparse.Namespace) -> int:
    ref = image_ref(args.model)
    check_out(args.out)  # before seconds of TensorFlow and the model
    assert ref.image_size is not None
    size = ref.image_size
    # A fine-tuned model takes raw pixels (its scaling is inside); a registry model its own
    # preprocessing, as the Keras model does.
    mode = None if ref.is_folder else ref.spec.input.preprocessing
    import_tensorflow()
    from zoo.loading import load_model
    from zoo.vision.export import export
    from zoo.vision.imagenet import preprocess

    model = load_model(ref)
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
