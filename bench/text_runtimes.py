"""Does OpenVINO run MiniLM (keras-hub backbone + Zoo's mean pooling) with parity, faster?

The measurement behind issue 17's question for text encoders. zoo.text runs the
all-MiniLM-L6-v2 backbone and its pooling as one `tf.function` over (None, None) token
ids and padding masks; here that same function is converted with `openvino.convert_model`
(dynamic batch and length), compiled in float32 and in bf16, and run on the same packed
batches as TensorFlow (the plain graph; XLA is what a long-running process converges to
for recurring shapes, see bench/embed.py). Sentences are bench/embed.py's generated ones
(5 to ~60 words), packed as `TextEncoder.pack_batches` packs them (sorted by length, each
batch padded to its longest text). Parity: the max relative error of the pooled vectors
(the f32 gate) and the lowest cosine similarity between TF's and the runtime's vectors.
Speed: sentences/s, the fastest of `--rounds` passes over all sentences, ratios against
TensorFlow in the same run.

    .venv/bin/python bench/text_runtimes.py [--sentences 256] [--batch-sizes 1 32 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def cosine_min(a: Any, b: Any) -> float:
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from zoo.quiet import import_tensorflow

    import_tensorflow()
    import numpy as np
    import openvino as ov
    from embed import sentences

    from zoo.text import load_encoder
    from zoo.vision.parity import relative_error

    encoder = load_encoder("minilm_l6_v2")
    texts = sentences(args.sentences)
    graph = encoder._run._graph  # backbone + pooling, (None, None) int32 inputs
    started = time.perf_counter()
    converted = ov.convert_model(graph.get_concrete_function())
    convert_s = time.perf_counter() - started
    core = ov.Core()
    runs: dict[str, Any] = {"tf": lambda ids, mask: np.asarray(graph(ids, mask))}
    for name, precision in (("openvino", ov.Type.f32), ("openvino-bf16", ov.Type.bf16)):
        compiled = core.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                         "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        runs[name] = (lambda r: lambda ids, mask: r.infer([ids, mask])[0].copy())(request)
    print(f"MiniLM-L6 (keras-hub) converted to OpenVINO in {convert_s:.1f} s; "
          f"inputs {[str(i.get_partial_shape()) for i in converted.inputs]}")
    for batch_size in args.batch_sizes:
        batches, _ = encoder.pack_batches(texts, batch_size=batch_size)
        inputs = [(p.token_ids.astype(np.int32), p.padding_mask.astype(np.int32))
                  for _, p in batches]
        outputs = {name: np.concatenate([run(ids, mask) for ids, mask in inputs])
                   for name, run in runs.items()}  # also the warm-up
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.rounds):
            for name, run in runs.items():
                t = time.perf_counter()
                for ids, mask in inputs:
                    run(ids, mask)
                best[name] = min(best[name], time.perf_counter() - t)
        print(f"batch {batch_size} ({len(inputs)} batches, {len(texts)} sentences):")
        for name in runs:
            speed = len(texts) / best[name]
            print(f"  {name:<14} {speed:8.1f} sentences/s  {best['tf'] / best[name]:5.2f}x"
                  f"   max rel. error {relative_error(outputs['tf'], outputs[name]):.1e}, "
                  f"min cosine {cosine_min(outputs['tf'], outputs[name]):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
