"""Held-out accuracy of fine-tuned heads on small data, against a linear probe.

Transfer learning is for people with 10 to 100 examples a class, so a fine-tune should be
at least as good as `LogisticRegression` on the very features Zoo caches. Side by side,
on the same data, splits and features, over several seeds (mean and standard deviation):

  (a) zoo       `zoo.finetune(base, data, out)` with every training default (the public
                call, so this column follows whatever the defaults become), measured on
                the held-out test examples through the saved model
  (b) probe     scikit-learn `LogisticRegression()` (defaults, enough iterations to
                converge) on the cached features of the examples zoo trains on (its
                training split: zoo keeps the rest for validation)
  (b+) probe+   the same probe on every labelled example zoo was given (train + val)
  (c) keras     the Keras transfer-learning guide's phase 1: frozen base, dropout 0.2,
                dense softmax, Adam 1e-3, 10 epochs, batch 32, on zoo's training split.
                A frozen base called with training=False gives the same features every
                epoch, so this trains on the cached features: the same computation as
                `model.fit` on the images or texts, minus the base's repeated forward passes
  (d) head_fit  zoo.finetuning.head_fit.fit_head on the same features: L2 chosen on the
                validation split (or by cross-validation when it is tiny), fitted to the
                optimum on the training split (skip with --without-head-fit)

Data sets (nothing is downloaded; "N/class" is what zoo.finetune is given, before its
20% validation split; the test examples are every other example of the pool, at most
--test-cap a class):
  digits      scikit-learn's handwritten digits 5-9, on a base (mobilenet_v2_035_96 at
              32 px by default) pretrained on digits 0-4 only: transfer to unseen classes.
              The weights take a minute or two once and are kept under --weights-cache.
  sentiment   tests/fixtures/sentiment.csv (70 review-like sentences, 2 classes), MiniLM.
  pydocs      sentences of Python's own reference documentation (`pydoc_data.topics`,
              shipped with CPython) labelled by the section they come from: pdb, str
              methods, the standard type hierarchy, compound statements, special method
              names (5 classes, 139-338 sentences each), MiniLM. The text differs a little
              between Python versions, so compare figures from the same Python.

    .venv/bin/python bench/quality.py [--datasets digits@10 digits@100 sentiment@10 \\
        pydocs@10 pydocs@100] [--seeds 3] [--json] [--without-head-fit]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXT_BASE = "minilm_l6_v2"
SENTIMENT = ROOT / "tests" / "fixtures" / "sentiment.csv"
PRETRAIN_DIGITS = (0, 1, 2, 3, 4)
PRETRAIN_EPOCHS, PRETRAIN_PER_CLASS = 12, 170  # part of the cached weights' key
TARGET_DIGITS = (5, 6, 7, 8, 9)
PYDOC_TOPICS = {"debugger": "pdb debugger", "string-methods": "str methods",
                "types": "type hierarchy", "compound": "compound statements",
                "specialnames": "special methods"}
DEFAULT_DATASETS = ("digits@10", "digits@100", "sentiment@10", "pydocs@10", "pydocs@100")
METHODS = {"zoo": "(a) zoo defaults", "probe": "(b) probe", "probe_all": "(b+) probe, train+val",
           "keras": "(c) keras guide", "head_fit": "(d) head_fit"}


@dataclass
class Pool:
    """Every labelled example of a data set and its features (computed once)."""

    kind: str  # "image" or "text"
    classes: list[str]
    labels: np.ndarray  # (n,) index into classes
    items: list[Any]  # image PNG paths or texts
    features: np.ndarray  # (n, d): pooled base features, or unit-length sentence embeddings
    pixels: np.ndarray | None = None  # (n, h, w, 3) uint8, images only
    extra: dict[str, Any] = field(default_factory=dict)


# --- data --------------------------------------------------------------------------------


def pydoc_sentences() -> tuple[list[str], list[str]]:
    """(sentences, section labels) from Python's reference documentation: prose sentences
    of 6+ words, code examples left out, sentences found in two sections dropped."""
    from pydoc_data.topics import topics

    found: dict[str, list[str]] = {}
    for topic in PYDOC_TOPICS:
        sentences: list[str] = []
        for paragraph in re.split(r"\n\s*\n", topics[topic]):
            if ">>>" in paragraph:
                continue
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"*])", " ".join(paragraph.split())):
                prose = sum(c.isalpha() or c == " " for c in s) / len(s) > 0.8
                if (len(re.findall(r"[A-Za-z]{2,}", s)) >= 6 and 40 <= len(s) <= 300
                        and s[-1] in ".!?:" and prose and s not in sentences):
                    sentences.append(s)
        found[topic] = sentences
    counts: dict[str, int] = {}
    for sentences in found.values():
        for s in sentences:
            counts[s] = counts.get(s, 0) + 1
    texts, labels = [], []
    for topic, sentences in found.items():
        for s in sentences:
            if counts[s] == 1:
                texts.append(s)
                labels.append(PYDOC_TOPICS[topic])
    return texts, labels


def text_pool(name: str) -> Pool:
    import zoo
    from zoo.text.data import read_text_dataset

    texts, names = read_text_dataset(SENTIMENT) if name == "sentiment" else pydoc_sentences()
    classes = sorted(set(names))
    labels = np.array([classes.index(n) for n in names])
    features = zoo.embed(TEXT_BASE, texts, batch_size=64)
    return Pool("text", classes, labels, texts, features)


def pretrained_base(args: argparse.Namespace, work: Path) -> None:
    """Point zoo at `args.model` weights pretrained on digits 0-4 (made once, then cached)."""
    from tests.keras_weights import write_mirror, write_pretrained_on_digits
    from zoo.hub.manifest import load_manifest

    key = (f"{args.model}-{args.image_size}px-digits{''.join(map(str, PRETRAIN_DIGITS))}"
           f"-{PRETRAIN_EPOCHS}ep-{PRETRAIN_PER_CLASS}")
    folder = args.weights_cache / key
    if not (folder / "top.h5").is_file() or not (folder / "notop.h5").is_file():
        started = time.perf_counter()
        partial = folder.with_name(folder.name + ".partial")
        write_pretrained_on_digits(args.model, partial, size=args.image_size,
                                   epochs=PRETRAIN_EPOCHS, classes=PRETRAIN_DIGITS,
                                   count=PRETRAIN_PER_CLASS)
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        partial.rename(folder)
        print(f"pretrained {args.model} on digits 0-4 in {time.perf_counter() - started:.0f} s; "
              f"kept in {folder}", file=sys.stderr)
    entry = load_manifest().model(args.model)
    manifest = write_mirror(work / "mirror", {entry.files["top"].origin: folder / "top.h5",
                                              entry.files["notop"].origin: folder / "notop.h5"},
                            work / "manifest.json")
    os.environ["ZOO_MANIFEST"] = str(manifest)
    os.environ["ZOO_KERAS_MIRROR"] = str(work / "mirror")


def image_pool(args: argparse.Namespace, work: Path) -> Pool:
    """Digits 5-9 as PNGs, decoded and featurised the way zoo.finetune does it."""
    import keras

    from tests.digits import write_digits
    from zoo.finetuning.image import predict_all, preprocessing_block
    from zoo.loading import load_model
    from zoo.vision.images import decode
    from zoo.vision.inference import compiled_image_call, inference_model

    size = (args.image_size, args.image_size)
    root = write_digits(work / "digits-pool", classes=TARGET_DIGITS, per_class=200,
                        size=args.image_size)
    classes = sorted(p.name for p in root.iterdir())
    paths = [p for c in classes for p in sorted((root / c).glob("*.png"))]
    labels = np.array([classes.index(p.parent.name) for p in paths])
    pixels = np.stack([decode(p, size) for p in paths])
    spec = __import__("zoo").get_spec(args.model)
    base = load_model(args.model, include_top=False, input_shape=(*size, 3))
    extractor = keras.Sequential([preprocessing_block(spec.input.preprocessing), base])
    call = compiled_image_call(inference_model(extractor), size)
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices((pixels.astype("float32"), labels)).batch(64)
    features = predict_all(call, batches)
    return Pool("image", classes, labels, paths, features, pixels)


def draw(pool: Pool, per_class: int, seed: int, test_cap: int) -> tuple[np.ndarray, np.ndarray]:
    """(given, test) indices: `per_class` examples a class for zoo, the rest (capped) to test."""
    rng = np.random.default_rng([seed, per_class])
    given, test = [], []
    for label in range(len(pool.classes)):
        members = rng.permutation(np.flatnonzero(pool.labels == label))
        if len(members) <= per_class:
            raise SystemExit(f"{pool.classes[label]} has {len(members)} examples; "
                             f"{per_class} a class leaves none to test on")
        given.extend(members[:per_class])
        test.extend(members[per_class: per_class + test_cap])
    return np.array(sorted(given)), np.array(sorted(test))


def zoo_split(pool: Pool, given: np.ndarray, data: Path, seed: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """(train, val) pool indices: the split zoo.finetune makes of `data` (default 20%)."""
    if pool.kind == "image":
        from zoo.finetuning.image_data import load_image_dataset

        size = pool.pixels.shape[1:3] if pool.pixels is not None else None
        dataset = load_image_dataset(data, size, seed=seed)  # type: ignore[arg-type]
        where = {str(Path(p).resolve()): i for i, p in enumerate(pool.items)}
        return (np.array([where[str(Path(p).resolve())] for p in dataset.train.paths]),
                np.array([where[str(Path(p).resolve())] for p in dataset.val.paths]))
    from zoo.finetuning.splits import stratified_split

    train, val = stratified_split(pool.labels[given], 0.2, seed)
    return given[train], given[val]


def write_given(pool: Pool, given: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"] if pool.kind == "image" else ["text", "label"])
        for i in given:
            writer.writerow([pool.items[i], pool.classes[pool.labels[i]]])
    return path


# --- the methods -------------------------------------------------------------------------


def zoo_defaults(pool: Pool, data: Path, out: Path, test: np.ndarray, seed: int,
                 args: argparse.Namespace) -> float:
    import zoo

    if pool.kind == "image":
        zoo.finetune(args.model, data, out, image_size=args.image_size, seed=seed)
        probs = zoo.ImageClassifier.load(out).probabilities(pool.pixels[test])
    else:
        from zoo.text.classifier import TextClassifier

        zoo.finetune(TEXT_BASE, data, out, seed=seed)
        probs, _ = TextClassifier.load(out).probabilities([pool.items[i] for i in test])
    return float(np.mean(probs.argmax(1) == pool.labels[test]))


def probe(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=10_000).fit(x, y)
    return float(model.score(x_test, y_test))


def keras_guide(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                classes: int, seed: int) -> float:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dropout(0.2),
                              keras.layers.Dense(classes, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, batch_size=32, shuffle=True, verbose=0)
    return float(np.mean(np.asarray(model(x_test)).argmax(1) == y_test))


def head_fit(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, x_test: np.ndarray,
             y_test: np.ndarray, classes: int, seed: int) -> tuple[float, dict[str, Any]]:
    from zoo.finetuning.head_fit import fit_head

    fit = fit_head(x, y, xv, yv, num_classes=classes, seed=seed)
    accuracy = float(np.mean(fit.predict_proba(x_test).argmax(1) == y_test))
    return accuracy, {"l2": fit.l2, "selection": fit.selection, "iterations": fit.iterations,
                      "converged": fit.converged}


# --- the run -----------------------------------------------------------------------------


def run_dataset(name: str, per_class: int, pool: Pool, args: argparse.Namespace, work: Path,
                say: Callable[[str], None]) -> dict[str, Any]:
    results: dict[str, list[float]] = {m: [] for m in METHODS}
    details: list[dict[str, Any]] = []
    n = len(pool.classes)
    for seed in range(args.seeds):
        given, test = draw(pool, per_class, seed, args.test_cap)
        folder = work / f"{name}@{per_class}" / f"seed{seed}"
        data = write_given(pool, given, folder)
        train, val = zoo_split(pool, given, data, seed)
        x, y, xv, yv = (pool.features[train], pool.labels[train], pool.features[val],
                        pool.labels[val])
        xt, yt = pool.features[test], pool.labels[test]
        started = time.perf_counter()
        results["zoo"].append(zoo_defaults(pool, data, folder / "model", test, seed, args))
        zoo_seconds = time.perf_counter() - started
        results["probe"].append(probe(x, y, xt, yt))
        results["probe_all"].append(probe(np.concatenate([x, xv]), np.concatenate([y, yv]),
                                          xt, yt))
        results["keras"].append(keras_guide(x, y, xt, yt, n, seed))
        detail: dict[str, Any] = {"seed": seed, "train": len(train), "val": len(val),
                                  "test": len(test), "zoo_seconds": round(zoo_seconds, 1)}
        if not args.without_head_fit:
            started = time.perf_counter()
            accuracy, fit = head_fit(x, y, xv, yv, xt, yt, n, seed)
            results["head_fit"].append(accuracy)
            detail.update(head_fit_seconds=round(time.perf_counter() - started, 2), **fit)
        details.append(detail)
        say(f"{name}@{per_class} seed {seed}: "
            + ", ".join(f"{m} {v[-1]:.3f}" for m, v in results.items() if v))
    return {"dataset": name, "per_class": per_class, "classes": n, "kind": pool.kind,
            "accuracy": {m: v for m, v in results.items() if v}, "runs": details}


def table(rows: list[dict[str, Any]]) -> str:
    methods = [m for m in METHODS if any(m in r["accuracy"] for r in rows)]
    lines = [f"{'data set':<16}{'classes':>8}  " + "".join(f"{METHODS[m]:>24}" for m in methods)]
    for row in rows:
        cells = []
        for m in methods:
            values = np.array(row["accuracy"].get(m, []))
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}" if len(values) else "-")
        label = f"{row['dataset']}@{row['per_class']}"
        lines.append(f"{label:<16}{row['classes']:>8}  " + "".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS),
                        help="NAME@PER_CLASS, NAME one of digits, sentiment, pydocs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test-cap", type=int, default=100,
                        help="at most this many test examples a class")
    parser.add_argument("--model", default="mobilenet_v2_035_96", help="the image base")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--weights-cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "zoo-bench" / "pretrained",
                        help="keeps the base's pretrained weights between runs")
    parser.add_argument("--without-head-fit", action="store_true",
                        help="leave out column (d)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    wanted = []
    for item in args.datasets:
        name, _, count = item.partition("@")
        if name not in ("digits", "sentiment", "pydocs") or not count.isdigit():
            parser.error(f"--datasets: {item!r} is not NAME@PER_CLASS "
                         "(digits, sentiment or pydocs)")
        wanted.append((name, int(count)))

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-quality-"))
    os.environ["ZOO_HOME"] = str(work / "home")
    from zoo.quiet import import_tensorflow

    import_tensorflow()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    pools: dict[str, Pool] = {}
    rows = []
    for name, per_class in wanted:
        if name not in pools:
            if name == "digits":
                pretrained_base(args, work)
                pools[name] = image_pool(args, work)
            else:
                pools[name] = text_pool(name)
        rows.append(run_dataset(name, per_class, pools[name], args, work, say))
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"results": rows, "seconds": round(elapsed, 1),
                          "image_base": args.model, "image_size": args.image_size,
                          "text_base": TEXT_BASE, "python": sys.version.split()[0]}, indent=2))
        return
    print(f"held-out accuracy, mean ± std over {args.seeds} seeds; images: {args.model} at "
          f"{args.image_size} px pretrained on digits 0-4; texts: {TEXT_BASE}")
    print(table(rows))
    print(f"({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
