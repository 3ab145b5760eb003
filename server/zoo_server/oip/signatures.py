"""The tensors each kind of Zoo model takes and gives over the Open Inference Protocol.

    image classifier   in:  image   BYTES [-1, 1]       encoded JPEG/PNG/WebP/..., decoded
                                                        and preprocessed as Classify does
                            pixels  FP32  [-1, H, W, 3] raw RGB 0-255 at the model's size
                       out: top_index INT32 [-1, k], top_score FP32 [-1, k],
                            top_label BYTES [-1, k], probabilities FP32 [-1, classes]
    text classifier    in:  text    BYTES [-1]          UTF-8
                       out: top_index, top_score, top_label, probabilities
    text encoder       in:  text    BYTES [-1]
                       out: embedding FP32 [-1, dim]    unit length unless normalize=false

A request sends exactly one input and gets the outputs it names (all when it names none).
`k` is the request parameter `top_k` (default 5), clamped to the number of classes; it
varies per request, so metadata shows it as -1. This module only checks and shapes
tensors; running the model is the backend's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zoo.errors import InvalidInputError
from zoo_server.oip.interface import ModelMetadata, TensorSpec
from zoo_server.oip.tensors import InferRequest, Tensor

IMAGE_CLASSIFIER = "image-classifier"
TEXT_CLASSIFIER = "text-classifier"
TEXT_ENCODER = "text-encoder"
KINDS = (IMAGE_CLASSIFIER, TEXT_CLASSIFIER, TEXT_ENCODER)
PLATFORM = "tensorflow_keras"  # "<project>_<format>": Keras 3 models on TensorFlow

IMAGE, PIXELS, TEXT = "image", "pixels", "text"
TOP_INDEX, TOP_SCORE, TOP_LABEL = "top_index", "top_score", "top_label"
PROBABILITIES, EMBEDDING = "probabilities", "embedding"
TOP_K, NORMALIZE, CLASSIFICATION = "top_k", "normalize", "classification"
DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class Signature:
    """A model's kind and the sizes its tensors depend on (None: not known yet)."""

    kind: str
    image_size: tuple[int, int] | None = None  # (height, width), image classifiers
    classes: int | None = None  # classifiers
    dim: int | None = None  # encoders: known once the model is loaded

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind of model {self.kind!r}")

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        if self.kind == IMAGE_CLASSIFIER:
            h, w = self.image_size or (-1, -1)
            return (TensorSpec(IMAGE, "BYTES", (-1, 1)), TensorSpec(PIXELS, "FP32", (-1, h, w, 3)))
        return (TensorSpec(TEXT, "BYTES", (-1,)),)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        if self.kind == TEXT_ENCODER:
            return (TensorSpec(EMBEDDING, "FP32", (-1, self.dim or -1)),)
        return (TensorSpec(TOP_INDEX, "INT32", (-1, -1)), TensorSpec(TOP_SCORE, "FP32", (-1, -1)),
                TensorSpec(TOP_LABEL, "BYTES", (-1, -1)),
                TensorSpec(PROBABILITIES, "FP32", (-1, self.classes or -1)))

    def metadata(self, name: str, versions: Sequence[str]) -> ModelMetadata:
        return ModelMetadata(name, tuple(versions), PLATFORM, self.inputs, self.outputs)


@dataclass(frozen=True)
class Plan:
    """A checked request: which input, its elements, the outputs to return and how."""

    input: str  # IMAGE, PIXELS or TEXT
    images: list[bytes] | None = None
    pixels: np.ndarray | None = None  # (N, H, W, 3) float32
    texts: list[str] | None = None
    outputs: tuple[str, ...] = ()
    top_k: int = DEFAULT_TOP_K
    normalize: bool = True

    @property
    def batch(self) -> int:
        if self.pixels is not None:
            return int(self.pixels.shape[0])
        return len(self.images if self.images is not None else self.texts or [])


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name} ({spec.datatype} {list(spec.shape)})"


def _check_input(tensor: Tensor, spec: TensorSpec, model: str) -> None:
    what = f"{model}: input {tensor.name!r}"
    if tensor.datatype != spec.datatype:
        raise InvalidInputError(f"{what} has datatype {tensor.datatype}; the model takes "
                                f"{_describe(spec)}")
    shape = tensor.shape
    if len(shape) != len(spec.shape) or any(
            want != -1 and got != want for got, want in zip(shape, spec.shape, strict=True)):
        raise InvalidInputError(f"{what} has shape {list(shape)}; the model takes "
                                f"{_describe(spec)}")
    if shape[0] == 0:
        raise InvalidInputError(f"{what} is an empty batch; send at least one element")


def _top_k(request: InferRequest, classes: int | None) -> int:
    k = request.parameters.get(TOP_K, DEFAULT_TOP_K)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidInputError(f"the {TOP_K} parameter must be a positive integer, got {k!r}")
    return min(k, classes) if classes else k


def _texts(tensor: Tensor, what: str) -> list[str]:
    texts = []
    for i, element in enumerate(tensor.data.reshape(-1)):
        try:
            text = bytes(element).decode()
        except UnicodeDecodeError:
            raise InvalidInputError(f"{what} element {i} is not UTF-8 text") from None
        if not text.strip():
            raise InvalidInputError(f"{what} element {i} is empty or only whitespace")
        texts.append(text)
    return texts


def plan(signature: Signature, request: InferRequest, model: str) -> Plan:
    """Check `request` against the signature of `model` (its description, for messages)."""
    specs = {s.name: s for s in signature.inputs}
    choices = " or ".join(_describe(s) for s in specs.values())
    if len(request.inputs) != 1:
        raise InvalidInputError(f"{model} takes exactly one input, {choices}; the request has "
                                f"{len(request.inputs)}")
    tensor = request.inputs[0]
    spec = specs.get(tensor.name)
    if spec is None:
        raise InvalidInputError(f"{model} has no input {tensor.name!r}; send {choices}")
    _check_input(tensor, spec, model)

    known = [s.name for s in signature.outputs]
    names = tuple(o.name for o in request.outputs) or tuple(known)
    for output in request.outputs:
        if output.name not in known:
            raise InvalidInputError(f"{model} has no output {output.name!r}; its outputs: "
                                    f"{', '.join(known)}")
        if CLASSIFICATION in output.parameters:
            raise InvalidInputError(f"the {CLASSIFICATION} extension is not supported; request "
                                    f"{TOP_INDEX}, {TOP_SCORE} and {TOP_LABEL} with {TOP_K}")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"an output is requested twice: {', '.join(names)}")
    normalize = request.parameters.get(NORMALIZE, True)
    if not isinstance(normalize, bool):
        raise InvalidInputError(f"the {NORMALIZE} parameter must be true or false")
    k = _top_k(request, signature.classes) if signature.kind != TEXT_ENCODER else DEFAULT_TOP_K

    what = f"{model}: input {tensor.name!r}"
    if tensor.name == IMAGE:
        return Plan(IMAGE, images=[bytes(e) for e in tensor.data.reshape(-1)], outputs=names,
                    top_k=k)
    if tensor.name == PIXELS:
        pixels = np.asarray(tensor.data, dtype=np.float32)
        if not np.isfinite(pixels).all():
            raise InvalidInputError(f"{what} holds NaN or infinite values; send RGB 0-255")
        return Plan(PIXELS, pixels=pixels, outputs=names, top_k=k)
    return Plan(TEXT, texts=_texts(tensor, what), outputs=names, top_k=k, normalize=normalize)


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """(N, k) class indices by falling probability, ties in class order: the same selection
    as zoo.v1's Classify (a partition, then a stable sort of the k)."""
    n = probs.shape[-1]
    k = min(k, n)
    if k < n:
        part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), probs.shape)
    order = np.argsort(-np.take_along_axis(probs, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def classification_outputs(probs: np.ndarray, labels: Sequence[str], plan: Plan
                           ) -> list[Tensor]:
    probs = np.asarray(probs, dtype=np.float32)
    wanted = set(plan.outputs)
    made: dict[str, Tensor] = {}
    if wanted & {TOP_INDEX, TOP_SCORE, TOP_LABEL}:
        index = top_k(probs, plan.top_k)
        made[TOP_INDEX] = Tensor(TOP_INDEX, "INT32", index.astype(np.int32))
        made[TOP_SCORE] = Tensor(TOP_SCORE, "FP32", np.take_along_axis(probs, index, axis=1))
        names = np.empty(index.shape, dtype=object)
        names.flat[:] = [(labels[i] if i < len(labels) else str(i)).encode()
                         for i in index.reshape(-1).tolist()]
        made[TOP_LABEL] = Tensor(TOP_LABEL, "BYTES", names)
    made[PROBABILITIES] = Tensor(PROBABILITIES, "FP32", probs)
    return [made[name] for name in plan.outputs]


def embedding_outputs(vectors: np.ndarray, plan: Plan) -> list[Tensor]:
    vectors = np.asarray(vectors, dtype=np.float32)
    if plan.normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return [Tensor(EMBEDDING, "FP32", vectors)]
