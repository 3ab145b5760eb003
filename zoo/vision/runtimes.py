"""Runtimes: what runs an image model forward, chosen per model and batch size.

TensorFlow runs Zoo's image models several times slower than this CPU allows. A runtime
turns a Keras image model (float32 (N, H, W, 3) in, as ImageClassifier and feature
extraction call it, outputs out) into a plain callable, numpy in and numpy out, safe to
call from several threads at once:

- `tf`: today's path, BatchNorm folded and one compiled call (zoo.vision.inference). The
  reference every other runtime is checked against; it needs nothing extra.
- `openvino`: the model converted to OpenVINO IR (cached on disk, zoo.vision.openvino_ir)
  and compiled for the CPU in float32. OpenVINO's default precision on a CPU with bf16
  instructions is bf16, so float32 is asked for explicitly.
- `openvino-bf16`: the same IR computed in bfloat16 where the CPU supports it.
- `auto`: every installed runtime that passes its parity gate (zoo.vision.parity) is
  timed at load at batch sizes 1, 8 and 32, and each batch is run by the fastest at the
  nearest measured size. A runtime replaces a more exact one only when it is at least 5 %
  faster, so `auto` is never slower than `tf` beyond the noise of the measurement.

Loading costs what the gates and the measurement cost; both are kept short. A gate's
result is kept beside the cached IR (`ParityCache`), so a model loaded again skips its
reference run; a bf16 gate stops as soon as more top-1 classes flipped than it allows; the
measurement times a runtime again only while it is within 1.5x of the fastest and has
used less than a second at that batch size. The measurement itself is repeated at every
load: the speeds depend on the machine's load as much as on the model.

Each OpenVINO runtime keeps a pool of infer requests, one per concurrent caller, under
the LATENCY hint (one stream using every core). With MobileNetV2 at 224 px on this 2-core
machine, two callers (the server's two batch threads) got 184-211 img/s from the pool,
119-124 from the THROUGHPUT hint's two streams at batch 8 and 32, and the same as the pool
from an AsyncInferQueue, which needs more machinery (provisional figures, loaded machine).

OpenVINO is an extra (`pip install 'zoo[openvino]'`): without it `auto` is `tf`, and
asking for an OpenVINO runtime by name says how to install it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError, RuntimeUnavailableError
from zoo.vision import parity
from zoo.vision.openvino_ir import Conversion, convert_cached
from zoo.vision.parity import Outputs, Parity
from zoo.vision.probe import probe_pixels

log = logging.getLogger("zoo")

TF = "tf"
OPENVINO = "openvino"
OPENVINO_BF16 = "openvino-bf16"
AUTO = "auto"
RUNTIMES = (TF, OPENVINO, OPENVINO_BF16)  # the concrete ones, most exact first
CHOICES = (*RUNTIMES, AUTO)  # what `--runtime` accepts
GATE = {OPENVINO: parity.F32, OPENVINO_BF16: parity.BF16}  # each OpenVINO runtime's precision
BATCH_SIZES = (1, 8, 32)  # what `auto` measures
F32_PROBE_IMAGES = 16  # float32 agreement shows on a few images; bf16 is judged on all 100
MARGIN = 1.05  # how much faster a less exact runtime must be to be chosen
CHUNK = 32  # probe images per call while gating
ROUNDS = 3  # timed calls per runtime and batch size; the fastest counts (the machine is shared)
BUDGET_S = 1.0  # seconds of timed calls per runtime and batch size, past the first call
DROP = 1.5  # a runtime this much slower than the fastest is not timed again
INSTALL_HINT = "pip install 'zoo[openvino]'"

ImageCall = Callable[[np.ndarray], np.ndarray]


def installed_runtimes() -> tuple[str, ...]:
    """The runtimes whose packages this environment has."""
    return RUNTIMES if importlib.util.find_spec("openvino") is not None else (TF,)


@dataclass(frozen=True)
class Candidate:
    """A runtime that must pass `gate` against the TensorFlow reference to be used."""

    name: str
    call: ImageCall
    gate: str  # parity.F32 or parity.BF16


@dataclass
class RuntimeReport:
    """Which runtime runs a model and why: what GetModel and `zoo info` show."""

    requested: str
    runtime: str  # a concrete runtime, or AUTO
    reason: str
    by_batch_size: dict[int, str] = field(default_factory=dict)  # auto: the measured choice
    throughput: dict[str, dict[int, float]] = field(default_factory=dict)  # img/s
    parity: dict[str, Parity] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # runtime -> why not
    conversion: Conversion | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested, "runtime": self.runtime, "reason": self.reason,
            "by_batch_size": {str(k): v for k, v in self.by_batch_size.items()},
            "throughput": {name: {str(bs): round(v, 1) for bs, v in by_size.items()}
                           for name, by_size in self.throughput.items()},
            "parity": {name: p.to_dict() for name, p in self.parity.items()},
            "refused": dict(self.refused),
            "conversion": self.conversion.to_dict() if self.conversion else None,
        }

    def summary(self) -> str:
        """One line: what runs, and the figure that decided it."""
        return f"{self.runtime}: {self.reason}"


class ImageRuntime:
    """`runtime(x)`: float32 (N, H, W, 3) -> outputs as numpy, from any number of threads.
    Under `auto`, each batch goes to the runtime chosen for the nearest measured size."""

    def __init__(self, calls: Mapping[int, ImageCall], report: RuntimeReport):
        if not calls:
            raise ValueError("a runtime needs at least one call")
        self._calls = dict(calls)
        self.report = report

    @property
    def name(self) -> str:
        return self.report.runtime

    def call_for(self, batch_size: int) -> ImageCall:
        """The callable that runs batches of `batch_size` (nearest measured size, in log)."""
        n = max(1, batch_size)
        size = min(self._calls, key=lambda k: (abs(math.log2(max(1, k)) - math.log2(n)), -k))
        return self._calls[size]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.call_for(len(x))(x)


def tf_call(model: Any, size: tuple[int, int]) -> ImageCall:
    """Today's path: BatchNorm folded, one compiled TensorFlow call, numpy out."""
    from zoo.vision.inference import compiled_image_call, inference_model

    compiled = compiled_image_call(inference_model(model), size)

    def call(x: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(np.asarray(x, dtype=np.float32)))

    return call


class OpenVINOCall:
    """A compiled OpenVINO model as a thread-safe callable: each concurrent caller takes an
    idle infer request from a pool (a new one when none is idle) and returns it after."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            # The request reads `x` in place and hands back a copy of its output, so the
            # next caller of this request cannot overwrite what this one returns.
            return np.asarray(request.infer({0: x}, share_inputs=True, share_outputs=False)[0])
        finally:
            self._idle.put(request)


@functools.cache
def openvino_core() -> Any:
    import openvino as ov

    return ov.Core()


def openvino_candidates(model: Any, size: tuple[int, int], names: Sequence[str],
                        outputs: Outputs, refused: dict[str, str]
                        ) -> tuple[list[Candidate], Conversion | None]:
    """The OpenVINO runtimes in `names` that can run here (the others land in `refused`,
    with the reason), and how the IR was obtained."""
    import openvino as ov

    names = [name for name in names if name in GATE]
    if OPENVINO_BF16 in names:
        if outputs != "scores":
            refused[OPENVINO_BF16] = "bf16 is judged on class scores only; these are features"
            names.remove(OPENVINO_BF16)
        elif "BF16" not in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            refused[OPENVINO_BF16] = "this CPU has no bf16 instructions"
            names.remove(OPENVINO_BF16)
    if not names:
        return [], None
    source, conversion = convert_cached(model, size, ov)
    candidates = []
    for name in names:
        precision = ov.Type.bf16 if GATE[name] == parity.BF16 else ov.Type.f32
        compiled = openvino_core().compile_model(source, "CPU", {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
        })
        candidates.append(Candidate(name, OpenVINOCall(compiled), GATE[name]))
    return candidates, conversion


def run_in_batches(call: ImageCall, x: np.ndarray, batch_size: int = CHUNK) -> np.ndarray:
    return np.concatenate([call(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def measure(calls: Mapping[str, ImageCall], x: np.ndarray, batch_sizes: Sequence[int],
            rounds: int = ROUNDS, budget_s: float = BUDGET_S, drop: float = DROP
            ) -> dict[str, dict[int, float]]:
    """Images per second of each call at each batch size: after one warm-up call, the
    fastest of up to `rounds` calls, the runtimes interleaved so they share the machine's
    load. A runtime is timed again only while it has spent less than `budget_s` at this
    batch size and is within `drop` times the fastest's time: a large model's batch of 32
    takes seconds, and a runtime twice as slow cannot win by being timed again."""
    result: dict[str, dict[int, float]] = {name: {} for name in calls}
    for batch_size in batch_sizes:
        batch = np.ascontiguousarray(np.resize(x, (batch_size, *x.shape[1:])), dtype=np.float32)
        for call in calls.values():
            call(batch)
        best = dict.fromkeys(calls, math.inf)
        spent = dict.fromkeys(calls, 0.0)
        for round_ in range(rounds):
            for name, call in calls.items():
                if round_ and (spent[name] >= budget_s or best[name] > drop * min(best.values())):
                    continue
                started = time.perf_counter()
                call(batch)
                seconds = time.perf_counter() - started
                best[name], spent[name] = min(best[name], seconds), spent[name] + seconds
        for name in calls:
            result[name][batch_size] = batch_size / best[name]
    return result


class ParityCache:
    """Gate results kept beside a cached IR (compiled/<key>/parity/), so a model loaded
    again skips the reference run. A result holds for exactly these IR bytes (checked by
    their sha256 on every load), this CPU (bf16 rounding depends on its instructions), these
    probe inputs (their digest) and these thresholds: all of them name its file."""

    def __init__(self, folder: Path, probe: np.ndarray, outputs: Outputs, cpu: str):
        self.folder = folder
        digest = hashlib.sha256(np.ascontiguousarray(probe).data.cast("B"))
        digest.update(json.dumps([outputs, cpu, parity.F32_MAX_RELATIVE_ERROR,
                                  parity.BF16_MIN_TOP1_AGREEMENT, parity.BF16_MIN_TOP5_OVERLAP,
                                  F32_PROBE_IMAGES]).encode())
        self.context = digest.hexdigest()[:32]

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}-{self.context}.json"

    def get(self, name: str) -> Parity | None:
        try:
            return Parity(**json.loads(self._path(name).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def put(self, name: str, result: Parity) -> None:
        try:
            self.folder.mkdir(exist_ok=True)
            tmp = self._path(name).with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(result.to_dict()), encoding="utf-8")
            os.replace(tmp, self._path(name))
        except OSError as e:  # a read-only cache: the next load checks again
            log.debug("parity not cached in %s: %s", self.folder, e)


def judge(reference: ImageCall, candidates: Sequence[Candidate], probe: np.ndarray,
          outputs: Outputs = "scores", cache: ParityCache | None = None) -> dict[str, Parity]:
    """Each candidate's parity with `reference` on `probe`: float32 candidates on the first
    F32_PROBE_IMAGES, bf16 ones on all (stopping once more top-1 classes flipped than the
    gate allows). The reference runs only as far as an uncached candidate needs."""
    expected: list[np.ndarray] = []  # the reference's outputs, chunk by chunk, shared

    def reference_chunk(i: int) -> np.ndarray:
        while len(expected) <= i:
            start = len(expected) * CHUNK
            expected.append(reference(probe[start:start + CHUNK]))
        return expected[i]

    figures: dict[str, Parity] = {}
    for candidate in candidates:
        cached = cache.get(candidate.name) if cache is not None else None
        if cached is not None:
            figures[candidate.name] = cached
            continue
        count = len(probe) if candidate.gate == parity.BF16 else min(F32_PROBE_IMAGES,
                                                                     len(probe))
        ours: list[np.ndarray] = []
        theirs: list[np.ndarray] = []
        flips = 0
        for i, start in enumerate(range(0, count, CHUNK)):
            stop = min(start + CHUNK, count)
            ours.append(reference_chunk(i)[:stop - start])
            theirs.append(candidate.call(probe[start:stop]))
            if candidate.gate == parity.BF16 and ours[-1].ndim == 2 and theirs[-1].shape == \
                    ours[-1].shape:
                flips += int(np.sum(ours[-1].argmax(-1) != theirs[-1].argmax(-1)))
                if flips > parity.allowed_flips(count) and stop < count:
                    break
        result = parity.check(np.concatenate(ours), np.concatenate(theirs), candidate.gate,
                              outputs)
        if result.images < count:
            result = replace(result, reason=f"{result.reason}; stopped after {result.images} "
                                            f"of {count} images, past the flips allowed")
        figures[candidate.name] = result
        if cache is not None:
            cache.put(candidate.name, result)
    return figures


def select(requested: str, reference: ImageCall, candidates: Sequence[Candidate],
           probe: np.ndarray, *, outputs: Outputs = "scores",
           batch_sizes: Sequence[int] = BATCH_SIZES, refused: dict[str, str] | None = None,
           conversion: Conversion | None = None, cache: ParityCache | None = None
           ) -> ImageRuntime:
    """Gate each candidate against `reference` on `probe` (model inputs), then serve
    `requested`: one candidate by name, or AUTO's fastest per batch size."""
    refused = dict(refused or {})
    figures = judge(reference, candidates, probe, outputs, cache)
    passing: list[Candidate] = []
    for candidate in candidates:
        result = figures[candidate.name]
        if result.passed:
            passing.append(candidate)
        else:
            refused[candidate.name] = f"failed its {candidate.gate} parity gate: {result.reason}"
            log.info("runtime %s refused: %s", candidate.name, refused[candidate.name])
    report = RuntimeReport(requested, requested, "", parity=figures, refused=refused,
                           conversion=conversion)
    if requested != AUTO:
        chosen = next((c for c in passing if c.name == requested), None)
        if chosen is None:
            why = refused.get(requested, "not available")
            raise RuntimeUnavailableError(f"runtime {requested} cannot run this model: {why}; "
                                          f"use --runtime {TF} or {AUTO}")
        report.reason = f"requested; parity {figures[requested].summary()}"
        return ImageRuntime({batch_sizes[0]: chosen.call}, report)
    if not passing:
        report.runtime = TF
        report.reason = ("the only runtime here" if not candidates and not refused else
                         "no other runtime usable: " + "; ".join(
                             f"{name} {why}" for name, why in refused.items()))
        return ImageRuntime({batch_sizes[0]: reference}, report)
    calls = {TF: reference, **{c.name: c.call for c in passing}}
    report.throughput = measure(calls, probe, batch_sizes)
    for batch_size in batch_sizes:
        choice = TF
        for candidate in passing:  # most exact first
            speed = report.throughput[candidate.name][batch_size]
            if speed >= MARGIN * report.throughput[choice][batch_size]:
                choice = candidate.name
        report.by_batch_size[batch_size] = choice
    report.reason = "fastest at parity: " + ", ".join(
        f"batch {bs} {name} {report.throughput[name][bs]:.0f} img/s "
        f"(tf {report.throughput[TF][bs]:.0f})" for bs, name in report.by_batch_size.items())
    return ImageRuntime({bs: calls[name] for bs, name in report.by_batch_size.items()}, report)


def load_runtime(model: Any, size: tuple[int, int], runtime: str = AUTO, *,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 outputs: Outputs = "scores", installed: Sequence[str] | None = None,
                 batch_sizes: Sequence[int] = BATCH_SIZES) -> ImageRuntime:
    """`model` (float32 (N, H, W, 3) -> outputs) as `runtime` (one of CHOICES).

    `prepare` turns uint8 probe pixels into the model's input (a registry model's
    preprocessing; None for models that take pixels). `outputs` says whether the model
    returns class scores or features (features are never run in bf16). `installed` is the
    runtimes this environment has (default: those whose packages import). Raises
    RuntimeUnavailableError when a runtime asked for by name cannot run here.
    """
    if runtime not in CHOICES:
        raise InvalidInputError(f"unknown runtime {runtime!r}; one of {', '.join(CHOICES)}")
    present = installed_runtimes() if installed is None else tuple(installed)
    reference = tf_call(model, size)
    if runtime == TF:
        return ImageRuntime({batch_sizes[0]: reference},
                            RuntimeReport(TF, TF, "requested; the TensorFlow reference"))
    wanted = [name for name in RUNTIMES if name != TF] if runtime == AUTO else [runtime]
    refused = {name: f"not installed ({INSTALL_HINT})" for name in wanted if name not in present}
    if runtime != AUTO and runtime in refused:
        raise RuntimeUnavailableError(f"runtime {runtime} needs OpenVINO: {INSTALL_HINT}, or "
                                      f"use --runtime {TF}")
    usable = [name for name in wanted if name in present]
    candidates, conversion = (openvino_candidates(model, size, usable, outputs, refused)
                              if usable else ([], None))
    pixels = probe_pixels(size, probe_size(candidates))
    probe = np.asarray(prepare(pixels) if prepare is not None else pixels, dtype=np.float32)
    cache = None
    if conversion is not None and conversion.path is not None:
        core = openvino_core()
        cpu = (f"{core.get_property('CPU', 'FULL_DEVICE_NAME')} "
               f"{sorted(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}")
        cache = ParityCache(conversion.path.parent / "parity", probe, outputs, cpu)
    return select(runtime, reference, candidates, probe, outputs=outputs,
                  batch_sizes=batch_sizes, refused=refused, conversion=conversion, cache=cache)


def probe_size(candidates: Sequence[Candidate]) -> int | None:
    """How many probe images the gates need: all (None) for bf16, a few for float32."""
    return None if any(c.gate == parity.BF16 for c in candidates) else F32_PROBE_IMAGES
