"""Phase-1 fine-tuning: Zoo's feature caching against the plain Keras-guide recipe.

Same data (scikit-learn digits as a PNG folder), same base weights, epochs, batch size,
learning rate and seed. The baseline is the recipe of the Keras transfer-learning
guide written out by hand: frozen base called with training=False inside the model,
`model.fit` on the image dataset every epoch. Zoo computes the frozen base's
features once and fits the head on them (its default: the head's optimum, one step), and
with `fit_head=False` trains the head on them for the same epochs as the recipe. Prints the
times, the ratios and the validation accuracies. Goal: phase 1 >= 10x faster, accuracy
within 1 point of the recipe or above it.

The default is the case the recipe is for: a full-size base (MobileNetV2) at a
realistic resolution (160 px), where the frozen base's forward passes are the cost.
Its weights are official-format files pretrained on other digits (there are no
ImageNet weights offline): 12 epochs at 48 px, where they are cheap, then 4 at the
bench's image size, so the features suit it. That takes about 4 minutes, once: the files
are kept under --weights-cache and reused. They are served from a local folder mirror.
With a tiny base at a tiny size (e.g. `--model mobilenet_v2_035_96 --image-size 32`)
fixed costs dominate both sides and the ratio says little about fine-tuning.

    .venv/bin/python bench/finetune.py [--model mobilenet_v2] [--image-size 160]
        [--epochs 10] [--per-class 80] [--learning-rate 0.001] [--pretrain-size 48]
        [--pretrain-final-epochs 4] [--weights-cache DIR] [--repeats 3] [--random-weights]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.digits import write_digits  # noqa: E402
from tests.keras_weights import (  # noqa: E402
    write_legacy_h5,
    write_mirror,
    write_pretrained_on_digits,
)


def keras_guide_baseline(model_name: str, data: Path, size: int, epochs: int, batch: int,
                         lr: float, seed: int) -> tuple[float, float, float]:
    """The Keras guide's phase 1, by hand; returns (training s, total s, val accuracy), the
    training being its phase 1."""
    import keras

    import zoo
    from zoo.finetuning.image import preprocessing_block
    from zoo.finetuning.image_data import load_image_dataset, to_tf_dataset

    spec = zoo.get_spec(model_name)
    dataset = load_image_dataset(data, (size, size), val_split=0.2, seed=seed)
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    base = zoo.load_model(model_name, include_top=False, input_shape=(size, size, 3))
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = preprocessing_block(spec.input.preprocessing)(inputs)
    x = base(x, training=False)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(len(dataset.classes), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = to_tf_dataset(dataset.train, (size, size), batch, shuffle=True, seed=seed)
    val = to_tf_dataset(dataset.val, (size, size), batch)
    fit_started = time.perf_counter()
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=0)
    done = time.perf_counter()
    return done - fit_started, done - started, float(history.history["val_accuracy"][-1])


def pretrained(args: argparse.Namespace) -> tuple[Path, Path]:
    """The base's pretrained weight files, made once per setting and kept in the cache."""
    final = args.image_size if args.pretrain_size != args.image_size else None
    key = (f"{args.model}-{args.pretrain_size}px-{args.pretrain_epochs}ep"
           + (f"-{final}px-{args.pretrain_final_epochs}ep" if final else ""))
    folder = args.weights_cache / key
    top, notop = folder / "top.h5", folder / "notop.h5"
    if top.is_file() and notop.is_file():
        print(f"pretrained weights reused from {folder}")
        return top, notop
    started = time.perf_counter()
    partial = folder.with_name(folder.name + ".partial")
    files = write_pretrained_on_digits(args.model, partial, size=args.pretrain_size,
                                       epochs=args.pretrain_epochs, final_size=final,
                                       final_epochs=args.pretrain_final_epochs)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    partial.rename(folder)
    print(f"pretrained the base in {time.perf_counter() - started:.0f} s; kept in {folder}")
    return tuple(folder / f.name for f in files)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--pretrain-size", type=int, default=48,
                        help="image size of the digit pretraining of the base's weights")
    parser.add_argument("--pretrain-final-epochs", type=int, default=4,
                        help="epochs of the pretraining at --image-size, after those at "
                             "--pretrain-size, so the features suit the size they are used at")
    parser.add_argument("--weights-cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "zoo-bench" / "pretrained",
                        help="keeps the pretrained weights between runs (they take minutes)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating runs of each side; ratios are medians over them")
    parser.add_argument("--random-weights", action="store_true",
                        help="skip the digit pretraining (speed only; accuracies then mean little)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-ft-"))
    os.environ["ZOO_HOME"] = str(work / "home")
    import zoo
    from zoo.hub.manifest import load_manifest

    if args.random_weights:
        top = write_legacy_h5(args.model, True, work / "weights" / "top.h5")
        notop = write_legacy_h5(args.model, False, work / "weights" / "notop.h5")
    else:
        top, notop = pretrained(args)
    entry = load_manifest().model(args.model)
    manifest = write_mirror(work / "mirror", {entry.files["top"].origin: top,
                                              entry.files["notop"].origin: notop},
                            work / "manifest.json")
    os.environ["ZOO_MANIFEST"] = str(manifest)
    os.environ["ZOO_KERAS_MIRROR"] = str(work / "mirror")
    data = write_digits(work / "digits", per_class=args.per_class, start=90)
    common = dict(epochs=args.epochs, batch_size=32, learning_rate=args.learning_rate, seed=0)
    zoo.fetch_weights(args.model, include_top=False)  # neither side pays for the copy

    # Alternating repeats, each ratio within its own repeat, and the median of those: on a
    # shared 2-core machine one run of either side varies by 10-20%.
    runs: list[dict[str, tuple[float, float, float]]] = []
    for repeat in range(args.repeats):
        run = {"recipe": keras_guide_baseline(args.model, data, args.image_size,
                                              common["epochs"], 32, args.learning_rate, 0)}
        for name, fit in (("fitted", True), ("epochs", False)):
            run[name] = zoo_phase_one(args, data, work / f"{name}-{repeat}", common,
                                      fit_head=fit)
        runs.append(run)
        print(f"repeat {repeat + 1}: phase 1 recipe {run['recipe'][0]:.1f} s, zoo defaults "
              f"{run['fitted'][0]:.1f} s, zoo --no-fit-head {run['epochs'][0]:.1f} s",
              flush=True)

    def median(values: list[float]) -> float:
        return float(np.median(values))

    print(f"{args.model} at {args.image_size} px, {args.epochs} epochs, "
          f"{10 * args.per_class} digit images (80/20 split), "
          + ("random base weights" if args.random_weights
             else f"base weights pretrained on other digits at {args.pretrain_size} px"
             + (f", then at {args.image_size} px" if args.pretrain_size != args.image_size
                else ""))
          + f"; medians of {args.repeats} alternating repeats")
    print(f"{'':52}{'phase 1':>9}{'whole run':>11}  val accuracy")
    labels = {"recipe": "keras-guide recipe (model.fit on images)",
              "fitted": "zoo defaults (features cached, head fitted)",
              "epochs": f"zoo --no-fit-head ({args.epochs} epochs on cached features)"}
    for name, label in labels.items():  # each run: (phase 1 s, whole run s, val accuracy)
        phase, whole = (median([r[name][i] for r in runs]) for i in (0, 1))
        acc = runs[-1][name][2]  # the same seed and data every repeat
        print(f"{label:52}{phase:8.1f}s{whole:10.1f}s  {acc:.4f}")
    for name, label in (("fitted", "defaults"), ("epochs", "--no-fit-head")):
        phase_ratios = [r["recipe"][0] / r[name][0] for r in runs]
        whole_ratios = [r["recipe"][1] / r[name][1] for r in runs]
        acc = runs[-1][name][2] - runs[-1]["recipe"][2]
        print(f"zoo {label}: phase-1 speed-up {median(phase_ratios):.1f}x (goal >= 10x; "
              f"repeats {', '.join(f'{x:.1f}x' for x in phase_ratios)}), whole run "
              f"{median(whole_ratios):.1f}x (zoo's includes metrics, plots, model card, "
              f"save); accuracy {100 * acc:+.1f} points against the recipe")


def zoo_phase_one(args: argparse.Namespace, data: Path, out: Path, common: dict,
                  fit_head: bool) -> tuple[float, float, float]:
    """zoo.finetune's phase 1 alone: (phase-1 s, whole run s, val accuracy). Phase 1 ends at
    the fitted head's event, or at the last epoch's with fit_head off."""
    import zoo

    marks: dict[str, float] = {}

    def clock(event: dict) -> None:
        if event["event"] == "phase":
            marks["phase1"] = time.perf_counter()
        if event["event"] in ("epoch", "head"):
            marks["end"] = time.perf_counter()

    started = time.perf_counter()
    result = zoo.finetune(args.model, data, out, image_size=args.image_size, patience=0,
                          fit_head=fit_head, on_event=clock, **common)
    total = time.perf_counter() - started
    return marks["end"] - marks["phase1"], total, float(result.history["val_accuracy"][-1])

if __name__ == "__main__":
    main()
