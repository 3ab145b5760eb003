"""Export an image model for another runtime, and prove the file computes what Keras does.

Keras 3 exports each of these formats itself (`model.export(path, format=...)`); what
users otherwise assemble by hand is the rest: the right file name per format, the extra
packages, and a check that the artifact agrees with the model before anyone ships it.
Each export is written into a private folder, run on probe images (zoo.vision.probe)
with the format's own runtime, compared against Keras under the float32 gate
(zoo.vision.parity), and only then renamed to `out`. A file that fails the check is not
kept: the error says by how much it failed.

| format | file | checked with | extra packages |
|---|---|---|---|
| openvino | model.xml + model.bin | OpenVINO, float32 | zoo[openvino] |
| onnx | model.onnx | ONNX Runtime | zoo[onnx] (tf2onnx, onnx, onnxruntime) |
| savedmodel | saved_model.pb + variables/ | TensorFlow (`serve`) | none |
| litert | model.tflite | the LiteRT (TF-Lite) interpreter | none |
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError, ParityError, RuntimeUnavailableError
from zoo.vision import parity
from zoo.vision.parity import Parity
from zoo.vision.probe import probe_pixels
from zoo.vision.runtimes import F32_PROBE_IMAGES, run_in_batches


@dataclass(frozen=True)
class Format:
    name: str
    keras_format: str  # what `model.export(format=...)` calls it
    filename: str | None  # the file inside `out`; None: `out` itself is the artifact
    packages: tuple[str, ...]  # modules it needs beyond Zoo's core
    extra: str | None  # the pyproject extra that installs them


_FORMATS = (
    Format("openvino", "openvino", "model.xml", ("openvino",), "openvino"),
    Format("onnx", "onnx", "model.onnx", ("tf2onnx", "onnx", "onnxruntime"), "onnx"),
    Format("savedmodel", "tf_saved_model", None, (), None),
    Format("litert", "litert", "model.tflite", (), None),
)
FORMATS = tuple(f.name for f in _FORMATS)  # what `zoo export --format` accepts
_BY_NAME = {f.name: f for f in _FORMATS}


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path  # the folder written
    artifact: Path  # the file (or folder) a runtime loads
    parity: Parity

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "artifact": str(self.artifact),
                "parity": self.parity.to_dict()}


def _check_packages(fmt: Format) -> None:
    missing = [m for m in fmt.packages if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeUnavailableError(
            f"export to {fmt.name} needs {', '.join(missing)}: pip install 'zoo[{fmt.extra}]'")


def _loader(fmt: Format, artifact: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The exported file as a callable, run by the format's own runtime."""
    if fmt.name == "openvino":
        from zoo.vision.runtimes import OpenVINOCall, openvino_core

        return OpenVINOCall(openvino_core().compile_model(
            str(artifact), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}))
    if fmt.name == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: np.asarray(session.run(None, {name: x})[0])
    if fmt.name == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(artifact))
        return lambda x: np.asarray(loaded.serve(tf.constant(x)))
    return _litert_call(artifact)


def _litert_call(artifact: Path) -> Callable[[np.ndarray], np.ndarray]:
    try:  # LiteRT's own package where it is installed; TensorFlow's copy otherwise
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated"
            Interpreter = tf.lite.Interpreter  # noqa: N806
    interpreter = Interpreter(model_path=str(artifact))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def call(x: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(source["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(target["index"]))

    return call


def check_out(out: str | Path) -> Path:
    """`out` as a path, if it is free: missing, or an empty folder."""
    path = Path(out).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidInputError(f"{path} already exists; give --out a new folder or remove it")
    return path


def export(model: Any, format: str, out: str | Path, *, size: tuple[int, int],
           prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> ExportResult:
    """Write `model` (float32 (N, H, W, 3) -> outputs) to `out` in `format` (one of
    FORMATS) after checking it against Keras on the probe images (`prepare` turns their
    uint8 pixels into the model's input). Raises ParityError, leaving nothing at `out`,
    when the exported file disagrees."""
    fmt = _BY_NAME.get(format)
    if fmt is None:
        raise InvalidInputError(f"unknown export format {format!r}; one of {', '.join(FORMATS)}")
    _check_packages(fmt)
    out = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.incomplete-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    partial.mkdir()
    try:
        target = partial / fmt.filename if fmt.filename else partial
        model.export(str(target), format=fmt.keras_format, verbose=False)
        pixels = probe_pixels(size, F32_PROBE_IMAGES)
        x = np.ascontiguousarray(prepare(pixels) if prepare else pixels, dtype=np.float32)
        reference = run_in_batches(lambda b: np.asarray(model(b, training=False)), x)
        result = parity.check(reference, run_in_batches(_loader(fmt, target), x), parity.F32)
        if not result.passed:
            raise ParityError(f"the {fmt.name} export disagrees with the Keras model: "
                              f"{result.reason}; nothing was written to {out}")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    artifact = out / fmt.filename if fmt.filename else out
    return ExportResult(fmt.name, out, artifact, result)
