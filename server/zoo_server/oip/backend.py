"""`InferenceBackend` on the server's model store and model manager: the adapter between the
Open Inference Protocol and the models zoo.v1 serves.

Requests take exactly the path zoo.v1's handlers take (zoo_server.inference), so a model has
one dynamic batcher whichever protocol its requests come from: encoded images are decoded
and prepared as Classify decodes them (`Inference.run_images`), FP32 pixels are prepared as
Classify's decoded pixels are (`run_pixels`), texts go to the text-classify or text-embed
batcher as in ClassifyText and Embed (`run_texts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError, ModelNotFoundError
from zoo.hub.spec import TEXT_CLASSIFICATION
from zoo_server.inference import Inference
from zoo_server.loaders import CLASSIFY, TEXT_CLASSIFY, TEXT_EMBED
from zoo_server.oip import signatures
from zoo_server.oip.interface import Call, ModelMetadata
from zoo_server.oip.signatures import Plan, Signature
from zoo_server.oip.tensors import InferRequest, InferResponse, Tensor
from zoo_server.store import FINETUNED, Resolved

TRUNCATED = "truncated"  # response parameter: texts cut to the model's maximum length

_MANAGER_KIND = {signatures.IMAGE_CLASSIFIER: CLASSIFY, signatures.TEXT_CLASSIFIER: TEXT_CLASSIFY,
                 signatures.TEXT_ENCODER: TEXT_EMBED}


def parse_version(version: str) -> int:
    """The protocol's version string as the store's number ("" or "0": the latest)."""
    if not version:
        return 0
    if not version.isdigit():
        raise InvalidInputError(f"model version {version[:40]!r} is not a version number; "
                                "versions are 1, 2, ... (empty: the latest)")
    return int(version)


class ZooBackend:
    """The server's models behind the OIP servicers (gRPC and HTTP)."""

    def __init__(self, inference: Inference, ready: Callable[[], bool]):
        self.inference = inference
        self.store, self.manager = inference.store, inference.manager
        self._ready = ready
        self._dims: dict[tuple[str, int], int] = {}  # encoders: dimension seen in answers

    # --- models ------------------------------------------------------------------------------

    def resolve(self, name: str, version: str) -> Resolved:
        return self.store.resolve(name, parse_version(version))

    def signature(self, resolved: Resolved) -> Signature:
        if resolved.is_image:
            return Signature(signatures.IMAGE_CLASSIFIER, resolved.image_size,
                             resolved.num_classes)
        if resolved.task == TEXT_CLASSIFICATION and resolved.origin == FINETUNED:
            return Signature(signatures.TEXT_CLASSIFIER, classes=resolved.num_classes)
        # Registry text models (MiniLM, and BERT-like backbones) serve their embeddings, as
        # Embed does; their dimension shows once the model has answered.
        return Signature(signatures.TEXT_ENCODER, dim=self._dims.get(resolved.key))

    def versions(self, resolved: Resolved) -> list[str]:
        if resolved.origin != FINETUNED:
            return []  # registry models are not versioned
        return [str(v) for v in self.store.versions(resolved.name)] or [str(resolved.version)]

    # --- InferenceBackend ----------------------------------------------------------------------

    def server_ready(self) -> bool:
        return self._ready()

    def model_ready(self, name: str, version: str) -> bool:
        try:
            resolved = self.resolve(name, version)
        except ModelNotFoundError:
            return False  # no such model is, in particular, not ready
        kind = _MANAGER_KIND[self.signature(resolved).kind]
        return self.manager.batcher(kind, resolved) is not None

    def model_metadata(self, name: str, version: str) -> ModelMetadata:
        resolved = self.resolve(name, version)
        return self.signature(resolved).metadata(resolved.name, self.versions(resolved))

    def infer(self, request: InferRequest, call: Call) -> InferResponse:
        resolved = self.resolve(request.model_name, request.model_version)
        signature = self.signature(resolved)
        plan = signatures.plan(signature, request, resolved.describe())
        call = call.sooner(request)
        parameters: dict[str, Any] = {}
        outputs: list[Tensor]
        if plan.input == signatures.IMAGE:
            probs, labels = self._images(resolved, plan.images or [], call)
            outputs = signatures.classification_outputs(probs, labels, plan)
        elif plan.input == signatures.PIXELS:
            probs, labels = self._pixels(resolved, plan, call)
            outputs = signatures.classification_outputs(probs, labels, plan)
        else:
            kind = _MANAGER_KIND[signature.kind]
            rows, labels = self._texts(kind, resolved, plan.texts or [], call)
            parameters[TRUNCATED] = sum(1 for _, cut in rows if cut)
            values = np.stack([v for v, _ in rows])
            if kind == TEXT_EMBED:
                self._dims[resolved.key] = int(values.shape[1])
                outputs = signatures.embedding_outputs(values, plan)
            else:
                outputs = signatures.classification_outputs(values, labels, plan)
        return InferResponse(resolved.name, str(resolved.version) if resolved.version else "",
                             outputs, request.id, parameters)

    # --- the model runs (the zoo.v1 handlers' path) --------------------------------------------

    def _images(self, resolved: Resolved, images: list[bytes], call: Call
                ) -> tuple[np.ndarray, Sequence[str]]:
        loaded, probs = self.inference.run_images(CLASSIFY, resolved, images, call.deadline,
                                                  call.is_active)
        return np.asarray(probs), loaded.labels

    def _pixels(self, resolved: Resolved, plan: Plan, call: Call
                ) -> tuple[np.ndarray, Sequence[str]]:
        assert plan.pixels is not None
        loaded, probs = self.inference.run_pixels(CLASSIFY, resolved, list(plan.pixels),
                                                  call.deadline, call.is_active)
        return np.asarray(probs), loaded.labels

    def _texts(self, kind: str, resolved: Resolved, texts: list[str], call: Call
               ) -> tuple[list[tuple[np.ndarray, bool]], Sequence[str]]:
        """ClassifyText's and Embed's path: (values, truncated) per text."""
        loaded, rows = self.inference.run_texts(kind, resolved, texts, call.deadline,
                                                call.is_active)
        return list(rows), loaded.labels
