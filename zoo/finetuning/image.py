"""Fine-tune a pretrained image model on a folder of images, the way experts do it.

Phase 1 trains a new head (dropout + dense) on the frozen base, which is called with
`training=False` so BatchNorm stays in inference mode. With augmentation off, the
frozen base gives the same features every epoch, so they are computed once, through an
inference copy of the base with BatchNorm folded away (zoo.vision.inference), and the
head trains on them: on a CPU that is the difference between minutes and hours. Phase 2
(when asked for) unfreezes the top of the base, BatchNorm excepted, and trains on at a
lower learning rate. zoo.finetuning.trainer runs the parts every fine-tune shares.

The saved model takes raw RGB pixels (0..255): its preprocessing is built from plain
Keras layers inside the graph, so the `.keras` file loads in safe mode and the
exported SavedModel serves without Zoo.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.finetuning.hyperparameters import HyperParameters
from zoo.finetuning.image_data import ImageDataset, Split, load_image_dataset, to_tf_dataset
from zoo.finetuning.trainer import (
    FineTuneResult,
    RunOptions,
    Trainer,
    compile_classifier,
    one_hot,
    prepare_output,
)
from zoo.hub.spec import IMAGE_CLASSIFICATION, ModelSpec
from zoo.vision.inference import compiled_image_call, inference_model
from zoo.vision.runtimes import load_runtime

EXPORT_FORMATS = ("savedmodel",)
FEATURE_BATCH = 64  # images per call of phase 1's frozen forward pass

FeatureExtractor = Callable[[ModelSpec, tuple[int, int], Split], np.ndarray]
"""Phase 1's frozen forward pass over one split: (base spec, image size, split) -> its
features, in order. `frozen_features` runs it in this process; a FeatureExtractor given to
zoo.finetune (`extract_features=`) runs it elsewhere, e.g. zoo_server.scale.features
sharded over a Ray cluster, and must give the same features."""


# --- building blocks ---------------------------------------------------------------------


def preprocessing_block(mode: str) -> Any:
    """The model's own pixel scaling as built-in Keras layers (safe-mode loadable)."""
    import keras

    layers: list[Any] = []
    if mode == "tf":
        layers = [keras.layers.Rescaling(1 / 127.5, offset=-1.0)]
    elif mode == "torch":
        std = np.array([0.229, 0.224, 0.225])
        layers = [
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Normalization(mean=[0.485, 0.456, 0.406], variance=(std**2).tolist()),
        ]
    elif mode == "caffe":
        # RGB -> BGR and mean subtraction as one frozen 1x1 linear map.
        swap = np.eye(3, dtype="float32")[::-1]
        mean = np.array([103.939, 116.779, 123.68], dtype="float32")
        dense = keras.layers.Dense(3, trainable=False, name="rgb_to_bgr_minus_mean")
        dense.build((None, 3))
        dense.set_weights([swap, -mean])
        layers = [dense]
    return keras.Sequential(layers, name="preprocess")


def augmentation_block(seed: int) -> Any:
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.1, seed=seed),
            keras.layers.RandomZoom(0.1, seed=seed),
            keras.layers.RandomContrast(0.1, seed=seed),
        ],
        name="augment",
    )


def head_block(features: int, num_classes: int, dropout: float) -> Any:
    import keras

    return keras.Sequential(
        [
            keras.Input((features,), name="features"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(num_classes, activation="softmax", name="predictions"),
        ],
        name="head",
    )


def assemble(spec: ModelSpec, size: tuple[int, int], base: Any, head: Any, augment: bool,
             seed: int) -> Any:
    """raw pixels -> [augment] -> preprocess -> base(training=False) -> head."""
    import keras

    inputs = keras.Input((*size, 3), name="image")
    x = augmentation_block(seed)(inputs) if augment else inputs
    x = preprocessing_block(spec.input.preprocessing)(x)
    x = base(x, training=False)
    return keras.Model(inputs, head(x), name=f"{spec.name}_finetuned")


def unfreeze_top(base: Any, layers: int, fraction: float | None) -> int:
    """Make the top `layers` (or `fraction`) of the base trainable; BatchNorm stays frozen."""
    import keras

    candidates = [layer for layer in base.layers if layer.weights]
    count = int(round(len(candidates) * fraction)) if fraction else layers
    count = min(count, len(candidates))
    base.trainable = True
    for i, layer in enumerate(candidates):
        train_it = i >= len(candidates) - count
        layer.trainable = train_it and not isinstance(layer, keras.layers.BatchNormalization)
    return count


def predict_all(call: Callable[[Any], Any], pixels_ds: Any, in_flight: int = 2) -> np.ndarray:
    """`call` on every batch, in order, two batches at a time: one compiled call leaves
    cores idle at its synchronisation points, and the second fills them (5-20% faster on
    2 cores)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    def run(x: Any) -> np.ndarray:
        return np.asarray(call(x))

    outputs: list[np.ndarray] = []
    with ThreadPoolExecutor(in_flight, thread_name_prefix="extract") as pool:
        running: list[Future[np.ndarray]] = []
        for x, _ in pixels_ds:
            running.append(pool.submit(run, x))
            if len(running) > in_flight:  # the next batch waits, ready, behind two
                outputs.append(running.pop(0).result())
        outputs.extend(f.result() for f in running)
    return np.concatenate(outputs)


def feature_runtime(spec: ModelSpec, size: tuple[int, int], base: Any,
                    runtime: str = "tf") -> Any:
    """The frozen base (with its preprocessing) as `runtime` runs it: `tf` is the
    BatchNorm-folded compiled call; OpenVINO runs it in f32 only (features are never run in
    bf16), admitted past its parity gate (zoo.vision.runtimes)."""
    import keras

    extractor = keras.Sequential([keras.Input((*size, 3), name="image"),
                                  preprocessing_block(spec.input.preprocessing), base])
    return load_runtime(extractor, size, runtime, outputs="features",
                        batch_sizes=(FEATURE_BATCH,))


def features_of(extract: Any, split: Split, size: tuple[int, int]) -> np.ndarray:
    """`extract` (a `feature_runtime`) over `split`, in batches of FEATURE_BATCH."""
    return predict_all(extract, to_tf_dataset(split, size, FEATURE_BATCH))


def frozen_features(spec: ModelSpec, size: tuple[int, int], split: Split) -> np.ndarray:
    """The frozen base's features of `split` on `tf`, the base built here from the same
    verified pretrained weights (a feature shard on another node)."""
    from zoo.vision.build import build_image_model

    base = build_image_model(spec, include_top=False, input_shape=(*size, 3))
    base.trainable = False
    return features_of(feature_runtime(spec, size, base), split, size)


# --- the recipe --------------------------------------------------------------------------


def finetune_images(spec: ModelSpec, data: str | Path, out: str | Path, hp: HyperParameters,
                    run: RunOptions) -> FineTuneResult:
    """Fine-tune registry image model `spec` on `data`; write a Zoo model folder to `out`."""
    if run.export is not None and run.export not in EXPORT_FORMATS:
        raise InvalidInputError(
            f"unknown export format {run.export!r}; choose {', '.join(EXPORT_FORMATS)}")
    assert spec.input.size is not None
    size = (hp.image_size, hp.image_size) if hp.image_size else spec.input.size
    folder = prepare_output(out, run.resume)
    dataset = load_image_dataset(data, size, val_data=run.val_data, val_split=hp.val_split,
                                 seed=hp.seed)
    if len(dataset.val) == 0:
        raise InvalidInputError("no validation images; raise --val-split or pass --val-data")
    emit = run.on_event or (lambda event: None)
    emit({"event": "data", "classes": dataset.classes, "train": len(dataset.train),
          "val": len(dataset.val), "skipped": [str(p) for p, _ in dataset.skipped]})
    identity = {"base": spec.name, "data": str(Path(data).resolve()), "size": list(size),
                "classes": dataset.classes, "hyperparameters": hp.to_dict()}
    trainer = Trainer(spec, folder, hp, run, identity)
    return _train(trainer, dataset, size, data)


def _train(trainer: Trainer, dataset: ImageDataset, size: tuple[int, int],
           data: str | Path) -> FineTuneResult:
    import keras

    from zoo.vision.build import build_image_model

    spec, hp = trainer.spec, trainer.hp
    keras.utils.set_random_seed(hp.seed)
    n = len(dataset.classes)
    base = build_image_model(spec, include_top=False, input_shape=(*size, 3))
    base.trainable = False
    head = head_block(int(base.output_shape[-1]), n, hp.dropout)
    cached = hp.cache_features and not hp.augment
    weights = trainer.class_weights(dataset.train.labels, n)
    y_train, y_val = one_hot(dataset.train.labels, n), one_hot(dataset.val.labels, n)
    train_ds = to_tf_dataset(dataset.train, size, hp.batch_size, shuffle=True, seed=hp.seed)
    val_ds = to_tf_dataset(dataset.val, size, hp.batch_size)

    def with_onehot(ds: Any) -> Any:
        import tensorflow as tf

        return ds.map(lambda x, y: (x, tf.one_hot(y, n)))

    start = trainer.phase1_start
    trainer.emit({"event": "phase", "phase": 1, "cached_features": cached,
                  "resumed_from_epoch": start})
    if not trainer.phase1_done:
        if cached:
            started = time.perf_counter()
            if trainer.run.extract_features is not None:
                f_train = trainer.run.extract_features(spec, size, dataset.train)
                f_val = trainer.run.extract_features(spec, size, dataset.val)
                how = "sharded"
            else:
                extract = feature_runtime(spec, size, base, trainer.run.runtime)
                f_train = features_of(extract, dataset.train, size)
                f_val = features_of(extract, dataset.val, size)
                how = extract.report.summary()
            trainer.emit({"event": "features", "seconds": round(time.perf_counter() - started, 2),
                          "shape": list(f_train.shape), "runtime": how})
            if start:
                head = trainer.load_checkpoint(1)
            head = trainer.fit_head(head, f_train, y_train, f_val, y_val, weights, start)
            model = assemble(spec, size, base, head, False, hp.seed)
        else:
            if start:
                model = trainer.load_checkpoint(1)
            else:
                model = assemble(spec, size, base, head, hp.augment, hp.seed)
                compile_classifier(model, hp.learning_rate, hp.label_smoothing, n)
            model.fit(with_onehot(train_ds), validation_data=with_onehot(val_ds),
                      epochs=hp.epochs, initial_epoch=start, class_weight=weights, verbose=0,
                      shuffle=False, callbacks=trainer.callbacks(1, hp.epochs))
        if hp.phase2 and trainer.phase1_finished():
            trainer.finish_phase1(head if cached else model)
    else:
        model = trainer.load_checkpoint(1)
        if cached:  # the phase-1 checkpoint is the head alone
            head = model
            model = assemble(spec, size, base, head, False, hp.seed)
    unfrozen = 0
    if hp.phase2 and not trainer.stopped():
        total = hp.epochs * 2
        resumed = trainer.done_phase == 2
        if resumed:
            model = trainer.load_checkpoint(2)
        inner_base = next(layer for layer in model.layers if layer.name == base.name)
        unfrozen = unfreeze_top(inner_base, hp.fine_tune_layers, hp.fine_tune_fraction)
        rate = hp.learning_rate * hp.fine_tune_lr_factor
        trainer.emit({"event": "phase", "phase": 2, "unfrozen_layers": unfrozen,
                      "learning_rate": rate,
                      "resumed_from_epoch": trainer.done_epoch if resumed else 0})
        if not resumed:
            compile_classifier(model, rate, hp.label_smoothing, n)
        model.fit(with_onehot(train_ds), validation_data=with_onehot(val_ds), epochs=total,
                  initial_epoch=trainer.done_epoch if resumed else hp.epochs,
                  class_weight=weights, verbose=0, shuffle=False,
                  callbacks=trainer.callbacks(2, total))
        if not trainer.stopped() and not trainer.phase2_improved():
            # Phase 2 trained the base in place: the phase-1 model comes back from its
            # checkpoint (the head alone when cached, on a freshly loaded base).
            model, unfrozen = trainer.load_checkpoint(1), 0
            if cached:
                fresh = build_image_model(spec, include_top=False, input_shape=(*size, 3))
                fresh.trainable = False
                model = assemble(spec, size, fresh, model, False, hp.seed)
    trainer.stop_if_asked()
    return _finish(trainer, dataset, size, model, cached, unfrozen, data)


def _finish(trainer: Trainer, dataset: ImageDataset, size: tuple[int, int], model: Any,
            cached: bool, unfrozen: int, data: str | Path) -> FineTuneResult:
    import keras

    spec = trainer.spec
    # An uncompiled wrapper: the saved model carries no optimizer state, only pixels -> probs
    # (augmentation layers, if any, are no-ops outside training).
    served = keras.Model(model.input, model.output, name=model.name)
    probs = predict_all(compiled_image_call(inference_model(served), size),
                        to_tf_dataset(dataset.val, size, 64))

    def export(out: Path) -> Path | None:
        if trainer.run.export != "savedmodel":
            return None
        exported = out / "savedmodel"
        shutil.rmtree(exported, ignore_errors=True)
        served.export(str(exported), format="tf_saved_model", verbose=False)
        return exported

    return trainer.finish(
        served, probs, dataset.val.labels, dataset.classes, task=IMAGE_CLASSIFICATION,
        inputs={"size": list(size), "preprocessing": spec.input.preprocessing,
                "pixels": "RGB uint8 0..255; preprocessing is inside the model"},
        data={"source": str(data), "train_examples": len(dataset.train),
              "val_examples": len(dataset.val), "skipped": len(dataset.skipped),
              "class_counts": dataset.class_counts()},
        training={"cached_features": cached, "unfrozen_layers": unfrozen},
        export=export)
