"""How each kind of served model is sized, built and let go: one loader class per kind.

    classify       ImageClassifierLoader  image classifier (registry ImageNet model or fine-tuned)
    image-embed    ImageFeaturesLoader    pooled features of an image model
    text-embed     TextEncoderLoader      a registry text model's sentence embeddings
    text-classify  TextClassifierLoader   a fine-tuned text classifier: a head on the shared
                                          text encoder, or an end-to-end model with its own
                                          fine-tuned backbone

The model manager (zoo_server.manager) asks a loader for its memory estimate before a load,
for the `Built` model (warmed up with one call, so tracing never lands on a request) and,
when a model is evicted, to release what it held. Loaders call the library through public
names only: the model a request names arrives as a ModelRef (`Resolved.ref`), resolved
once by the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.hub.spec import TEXT_CLASSIFICATION
from zoo_server.store import Resolved

CLASSIFY = "classify"
IMAGE_EMBED = "image-embed"
TEXT_EMBED = "text-embed"
TEXT_CLASSIFY = "text-classify"
KINDS = (CLASSIFY, IMAGE_EMBED, TEXT_EMBED, TEXT_CLASSIFY)

Run = Callable[[list[Any]], Any]  # a batch of prepared inputs -> one output per input


@dataclass
class Built:
    """A model ready to serve: what runs a batch, and what requests need to know of it."""

    model: Any  # ImageClassifier, feature model, TextEncoder, TextClassifier
    run: Run
    memory: int  # bytes of weights
    size: tuple[int, int] | None = None  # images: (height, width)
    labels: list[str] = field(default_factory=list)
    dim: int = 0  # embeddings
    prepare: Callable[[np.ndarray], np.ndarray] | None = None  # images: uint8 -> model input
    seconds: float = 0.0  # how long the build took
    runtime: Any = None  # images: zoo.vision.runtimes.RuntimeReport (which runtime, and why)
    batch_threads: int = 0  # batches in flight at once; 0: --batch-threads
    replicas: Callable[[], list[Any]] | None = None  # elsewhere (Ray): each replica's load


def weights_bytes(model: Any) -> int:
    total = 0
    for w in getattr(model, "weights", []):
        total += int(np.prod(w.shape)) * np.dtype(getattr(w, "dtype", "float32")).itemsize
    return total


def runtime_memory(model: Any, report: Any) -> int:
    """The weights once for TensorFlow (always kept: the reference), and once more for each
    OpenVINO runtime that serves some batch size."""
    used = set(report.by_batch_size.values()) if report.by_batch_size else {report.runtime}
    return weights_bytes(model) * (1 + len(used - {"tf"}))


def _saved_size(resolved: Resolved) -> int:
    try:
        return (resolved.path / "model.keras").stat().st_size if resolved.path else 0
    except OSError:
        return 0


class Loader:
    """One kind of served model. Subclasses say what they accept and how to build it.
    `runtime_for(name)` says what runs an image model (ServerConfig.runtime_for)."""

    kind = ""

    def __init__(self, runtime_for: Callable[[str], str] = lambda name: "tf"):
        self.runtime_for = runtime_for

    def check(self, resolved: Resolved) -> None:
        """Raise InvalidInputError when this kind cannot serve `resolved`."""

    def estimate_bytes(self, resolved: Resolved) -> int:
        """The weights' size before loading: the saved model's size for a fine-tune,
        parameters x 4 (float32) for a registry model."""
        if resolved.path is not None:
            return _saved_size(resolved)
        params = resolved.spec.params if resolved.spec is not None else None
        return int(params or 25_000_000) * 4

    def build(self, resolved: Resolved) -> Built:
        raise NotImplementedError

    def shared_encoder(self, resolved: Resolved) -> str | None:
        """The registry text model whose process-wide encoder this model uses, if any."""
        return None

    def release(self, resolved: Resolved, still_used: Iterable[str | None]) -> None:
        """Let go of what the model held beyond its own object (a shared encoder no other
        loaded model uses)."""
        base = self.shared_encoder(resolved)
        if base is not None and base not in set(still_used):
            from zoo.text.encoder import unload_encoder

            unload_encoder(base)


class ImageClassifierLoader(Loader):
    kind = CLASSIFY

    def check(self, resolved: Resolved) -> None:
        if not resolved.is_image:
            raise InvalidInputError(
                f"{resolved.describe()} is a {resolved.task} model; Classify takes image models")

    def build(self, resolved: Resolved) -> Built:
        from zoo.vision.classifier import ImageClassifier

        clf = ImageClassifier.load(resolved.ref, self.runtime_for(resolved.name))

        def run(inputs: list[np.ndarray]) -> np.ndarray:  # prepared in the decoding threads
            return clf.run(np.stack(inputs))

        run([clf.prepare(np.zeros((*clf.size, 3), np.uint8))])  # trace now, not on a request
        return Built(clf, run, runtime_memory(clf.model, clf.report), size=clf.size,
                     labels=clf.labels, prepare=clf.prepare, runtime=clf.report)


class ImageFeaturesLoader(Loader):
    kind = IMAGE_EMBED

    def check(self, resolved: Resolved) -> None:
        if not resolved.is_image:
            raise InvalidInputError(f"{resolved.describe()} is a {resolved.task} model, not an "
                                    "image model; send texts to embed")

    def build(self, resolved: Resolved) -> Built:
        from zoo.loading import load_model
        from zoo.vision.imagenet import preprocess
        from zoo.vision.runtimes import load_runtime

        size = resolved.image_size
        assert size is not None
        ref = resolved.ref
        # Fine-tuned models take raw pixels (their scaling is inside); registry models
        # take their own preprocessing.
        mode = None if ref.is_folder else ref.spec.input.preprocessing
        model = load_model(ref, include_top=False)

        def prepare(pixels: np.ndarray) -> np.ndarray:
            x = np.asarray(pixels, dtype=np.float32)
            return preprocess(x, mode) if mode else x

        # Features in f32 only (a bf16 gate on top-1 means nothing for features).
        call = load_runtime(model, size, self.runtime_for(resolved.name), prepare=prepare,
                            outputs="features")

        def run(inputs: list[np.ndarray]) -> np.ndarray:
            return np.asarray(call(np.stack(inputs)))

        dim = int(run([prepare(np.zeros((*size, 3), np.uint8))]).shape[-1])
        return Built(model, run, runtime_memory(model, call.report), size=size, dim=dim,
                     prepare=prepare, runtime=call.report)


class TextEncoderLoader(Loader):
    kind = TEXT_EMBED

    def check(self, resolved: Resolved) -> None:
        if resolved.path is not None or resolved.spec is None or not resolved.spec.is_text:
            raise InvalidInputError(
                f"{resolved.describe()} is not a registered text model; embed texts with one of "
                "`zoo list --task text-embedding` (or a text backbone)")

    def shared_encoder(self, resolved: Resolved) -> str | None:
        return resolved.spec.name if resolved.spec is not None else None

    def build(self, resolved: Resolved) -> Built:
        from zoo.text.encoder import load_encoder

        assert resolved.spec is not None
        encoder = load_encoder(resolved.spec)

        def run(texts: list[str]) -> list[tuple[np.ndarray, bool]]:
            result = encoder.encode(texts, normalize=False)
            cut = set(result.truncated)
            return [(result.vectors[i], i in cut) for i in range(len(texts))]

        run(["warm up"])
        return Built(encoder, run, weights_bytes(encoder.backbone), dim=encoder.dim)


class TextClassifierLoader(Loader):
    kind = TEXT_CLASSIFY

    def check(self, resolved: Resolved) -> None:
        if resolved.task != TEXT_CLASSIFICATION or resolved.path is None:
            raise InvalidInputError(
                f"{resolved.describe()} is not a fine-tuned text classifier"
                + (" (registry text models are backbones: fine-tune one with CreateJob)"
                   if resolved.spec is not None and resolved.spec.is_text
                   and resolved.path is None else ""))

    def shared_encoder(self, resolved: Resolved) -> str | None:
        """A head on its base's shared encoder (not an end-to-end model, which holds its
        own fine-tuned backbone)."""
        if resolved.ref.takes_tokens or resolved.meta is None:
            return None
        return str(resolved.meta.get("base"))

    def estimate_bytes(self, resolved: Resolved) -> int:
        """The saved model, plus its base encoder for a head on the shared encoder."""
        params = resolved.spec.params if resolved.spec is not None else None
        shared = self.shared_encoder(resolved) is not None
        return _saved_size(resolved) + (int(params or 0) * 4 if shared else 0)

    def build(self, resolved: Resolved) -> Built:
        from zoo.text.classifier import TextClassifier

        clf = TextClassifier.load(resolved.ref)

        def run(texts: list[str]) -> list[tuple[np.ndarray, bool]]:
            probs, truncated = clf.probabilities(texts)
            cut = set(truncated)
            return [(probs[i], i in cut) for i in range(len(texts))]

        run(["warm up"])
        memory = weights_bytes(clf.model) + (
            0 if clf.takes_tokens else weights_bytes(clf.encoder.backbone))
        return Built(clf, run, memory, labels=list(clf.labels))


def loaders(runtime_for: Callable[[str], str] = lambda name: "tf") -> dict[str, Loader]:
    """One loader of each kind, image loaders running models as `runtime_for(name)` says."""
    return {loader.kind: loader for loader in (
        ImageClassifierLoader(runtime_for), ImageFeaturesLoader(runtime_for),
        TextEncoderLoader(), TextClassifierLoader())}


LOADERS = loaders()


def kind_for(resolved: Resolved) -> str:
    """The kind a model is loaded as when nothing else says (LoadModel, --preload)."""
    if resolved.is_image:
        return CLASSIFY
    if resolved.task == TEXT_CLASSIFICATION and resolved.path is not None:
        return TEXT_CLASSIFY
    return TEXT_EMBED


def build(loader: Loader, resolved: Resolved) -> Built:
    """Check, then build and time a model (TensorFlow is imported here, not before)."""
    from zoo.quiet import import_tensorflow

    loader.check(resolved)
    started = time.perf_counter()
    import_tensorflow()
    built = loader.build(resolved)
    built.seconds = time.perf_counter() - started
    return built
