"""Every image runtime side by side: img/s at batch 1, 8 and 32, and parity with TensorFlow.

One process, one run, for MobileNetV2, ResNet50 and EfficientNetB0 at 224 px:

  tf             today's path (BatchNorm folded, one compiled call): the baseline
  openvino       OpenVINO IR, float32 (the f32 gate: max relative error <= 1e-4)
  openvino-bf16  the same IR in bfloat16 (the bf16 gate: top-1 agreement >= 99 %, top-5
                 overlap >= 90 % on 100 real probe images)
  auto           what `--runtime auto` picks per batch size, from its own short measurement

and phase-1 feature extraction as fine-tuning runs it (MobileNetV2 without its head at
160 px, preprocessing inside, batches of 64, two in flight as zoo.finetune.image's
`_predict_all` runs them) through `tf` and through `openvino` (features are never bf16).

Weights are random (there is no internet here for ImageNet weights), with BatchNorm
statistics calibrated on photographs so that outputs differ from image to image and the
top-1 comparison means something; a pretrained network's margins between classes are
larger, so its bf16 agreement is, if anything, higher. Outputs are the softmax scores the
models serve. Each figure is the fastest of `--rounds` timed calls after a warm-up, with
the runtimes interleaved so they share the machine's load; ratios are against `tf` in the
same run. On a shared 2-core machine the figures are provisional.

    .venv/bin/python bench/runtimes.py [--models mobilenet_v2 resnet50 efficientnet_b0]
                                       [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ("mobilenet_v2", "resnet50", "efficientnet_b0")
BATCH_SIZES = (1, 8, 32)


def random_model(name: str) -> tuple[Any, tuple[int, int], str]:
    """(a softmax classifier with random weights and calibrated BatchNorm, size, mode)."""
    import keras
    import numpy as np

    from zoo.hub.registry import get_spec
    from zoo.vision.imagenet import preprocess
    from zoo.vision.probe import probe_pixels

    spec = get_spec(name)
    assert spec.input.size is not None
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, spec.architecture)(
        weights=None, input_shape=(*spec.input.size, 3), **spec.kwargs)
    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # moving statistics := those of this batch of photographs
    model(np.asarray(preprocess(probe_pixels(spec.input.size)[::3], spec.input.preprocessing)),
          training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model, spec.input.size, spec.input.preprocessing


def bench_model(name: str, rounds: int) -> dict[str, Any]:
    import numpy as np

    from zoo.vision import parity, runtimes
    from zoo.vision.imagenet import preprocess
    from zoo.vision.probe import probe_pixels

    model, size, mode = random_model(name)
    probe = np.asarray(preprocess(probe_pixels(size), mode), dtype=np.float32)
    reference = runtimes.tf_call(model, size)
    refused: dict[str, str] = {}
    started = time.perf_counter()
    present = [r for r in runtimes.installed_runtimes() if r != runtimes.TF]
    candidates, conversion = runtimes.openvino_candidates(model, size, present, "scores",
                                                          refused)
    convert_s = time.perf_counter() - started
    expected = runtimes.run_in_batches(reference, probe)
    figures: dict[str, dict[str, Any]] = {}
    calls = {runtimes.TF: reference}
    for candidate in candidates:
        count = len(probe) if candidate.gate == parity.BF16 else runtimes.F32_PROBE_IMAGES
        result = parity.check(expected[:count], runtimes.run_in_batches(candidate.call,
                                                                        probe[:count]),
                              candidate.gate)
        # bf16 is also shown with its element-wise error on the same 100 images
        figures[candidate.name] = {**result.to_dict(), "max_relative_error_all": parity.
                                   relative_error(expected, runtimes.run_in_batches(
                                       candidate.call, probe))}
        calls[candidate.name] = candidate.call
    throughput = runtimes.measure(calls, probe, BATCH_SIZES, rounds=rounds,
                                  budget_s=float("inf"), drop=float("inf"))
    started = time.perf_counter()
    auto = runtimes.load_runtime(model, size, runtimes.AUTO,
                                 prepare=lambda p: preprocess(p, mode))
    auto_s = time.perf_counter() - started
    return {
        "model": name, "size": list(size), "throughput": throughput, "parity": figures,
        "refused": refused, "conversion": conversion.to_dict() if conversion else None,
        "convert_and_compile_s": round(convert_s, 2),
        "auto": {"by_batch_size": auto.report.by_batch_size, "load_s": round(auto_s, 2),
                 "reason": auto.report.reason, "refused": auto.report.refused},
    }


def bench_features(rounds: int, images: int = 512, size: int = 160) -> dict[str, Any]:
    """Phase-1 extraction img/s through tf and openvino, 2 batches of 64 in flight."""
    from concurrent.futures import ThreadPoolExecutor

    import keras
    import numpy as np

    from zoo.vision import parity, runtimes
    from zoo.vision.probe import probe_pixels

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg",
                                          input_shape=(size, size, 3))
    extractor = keras.Sequential([keras.Input((size, size, 3)),
                                  keras.layers.Rescaling(1 / 127.5, offset=-1.0), base])
    pixels = np.resize(probe_pixels((size, size)), (images, size, size, 3)).astype(np.float32)
    batches = [pixels[i:i + 64] for i in range(0, images, 64)]
    present = [r for r in (runtimes.TF, runtimes.OPENVINO) if r in runtimes.installed_runtimes()]
    loaded = {name: runtimes.load_runtime(extractor, (size, size), name, outputs="features")
              for name in present}

    def extract(runtime: Any) -> np.ndarray:
        with ThreadPoolExecutor(2) as pool:
            return np.concatenate(list(pool.map(runtime, batches)))

    features = {name: extract(runtime) for name, runtime in loaded.items()}  # warm-up
    best = dict.fromkeys(loaded, float("inf"))
    for _ in range(rounds):
        for name, runtime in loaded.items():
            started = time.perf_counter()
            extract(runtime)
            best[name] = min(best[name], time.perf_counter() - started)
    return {"images": images, "size": size,
            "img_per_s": {name: images / seconds for name, seconds in best.items()},
            "max_relative_error": {name: parity.relative_error(features[runtimes.TF], out)
                                   for name, out in features.items()}}


def print_table(result: dict[str, Any]) -> None:
    tp, tf = result["throughput"], result["throughput"]["tf"]
    print(f"\n{result['model']} {result['size'][0]} px "
          f"(IR: {'cached' if (result['conversion'] or {}).get('cached') else 'converted'}, "
          f"{result['convert_and_compile_s']} s with compiling)")
    header = f"  {'runtime':<14} " + "".join(f"{'batch ' + str(bs):>22}" for bs in BATCH_SIZES)
    print(header + "   parity")
    for name, by_size in tp.items():
        cells = "".join(f"{by_size[bs]:>10.1f} img/s {by_size[bs] / tf[bs]:>5.2f}x"
                        for bs in BATCH_SIZES)
        figure = result["parity"].get(name)
        note = "reference" if figure is None else (
            f"{'pass' if figure['passed'] else 'FAIL'}: {figure['reason']}"
            + (f"; max rel. error {figure['max_relative_error_all']:.1e}"
               if figure["gate"] == "bf16" else ""))
        print(f"  {name:<14} {cells}   {note}")
    for name, why in result["refused"].items():
        print(f"  {name:<14} refused: {why}")
    auto = result["auto"]
    picks = ", ".join(f"batch {bs}: {rt}" for bs, rt in auto["by_batch_size"].items())
    print(f"  auto picks     {picks or 'tf'} (its own measurement, {auto['load_s']} s to load)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-features", action="store_true", help="skip phase-1 extraction")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from zoo.quiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    from zoo.vision import runtimes

    machine: dict[str, Any] = {"cpu": platform.processor() or platform.machine(),
                               "cores": os.cpu_count(), "tensorflow": tf.__version__,
                               "runtimes": list(runtimes.installed_runtimes())}
    if runtimes.OPENVINO in machine["runtimes"]:
        import openvino as ov

        core = runtimes.openvino_core()
        machine.update(openvino=ov.get_version(),
                       cpu=core.get_property("CPU", "FULL_DEVICE_NAME"),
                       capabilities=list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
                       default_precision=str(core.get_property("CPU",
                                                               "INFERENCE_PRECISION_HINT")))
    if not args.json:
        print(f"machine: {machine}; random weights, calibrated BatchNorm (no internet)")
    results = []
    for name in args.models:
        result = bench_model(name, args.rounds)
        results.append(result)
        if not args.json:
            print_table(result)
    features = None if args.no_features else bench_features(args.rounds)
    if args.json:
        print(json.dumps({"machine": machine, "results": results, "features": features},
                         indent=2, default=str))
    elif features is not None:
        tf_speed = features["img_per_s"]["tf"]
        print(f"\nphase-1 extraction, MobileNetV2 no top, {features['size']} px, "
              f"{features['images']} images in batches of 64, 2 in flight:")
        for name, speed in features["img_per_s"].items():
            print(f"  {name:<14} {speed:8.1f} img/s {speed / tf_speed:5.2f}x   max rel. error "
                  f"{features['max_relative_error'][name]:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
