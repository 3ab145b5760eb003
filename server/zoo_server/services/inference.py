"""zoo.v1 InferenceService: Classify, ClassifyStream, ClassifyText, Embed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import grpc
import numpy as np

from zoo.errors import InvalidInputError
from zoo.hub.spec import TEXT_CLASSIFICATION
from zoo.predictions import DEFAULT_TOP_K, resolve_top_k, top_predictions
from zoo_api.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from zoo_server.errors import status_for
from zoo_server.inference import Inference, prepared_bytes
from zoo_server.loaders import CLASSIFY, IMAGE_EMBED, TEXT_CLASSIFY, TEXT_EMBED
from zoo_server.services import deadline_of, spec_of
from zoo_server.store import FINETUNED, REGISTRY, Resolved

STREAM_WINDOW = 64  # requests of one ClassifyStream in progress at once


def top_k_for(top_k: int, resolved: Resolved) -> int:
    """The request's top_k (0: min(5, classes)), clamped to the model's classes."""
    return resolve_top_k(top_k, resolved.num_classes or DEFAULT_TOP_K)


def predictions(probs: np.ndarray, labels: Sequence[str], k: int) -> list[common_pb2.Prediction]:
    return [common_pb2.Prediction(label=p.label, score=p.score, index=p.index)
            for p in top_predictions(probs, labels, k)]


class InferenceService(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, inference: Inference):
        self.inference = inference
        self.manager = inference.manager

    def Classify(self, request: inference_pb2.ClassifyRequest, context: grpc.ServicerContext
                 ) -> inference_pb2.ClassifyResponse:
        resolved = self.inference.image_model(request.model.name, request.model.version,
                                                "Classify")
        k = top_k_for(request.top_k, resolved)
        if not request.images:
            raise InvalidInputError("images is empty: send a non-empty list of encoded images")
        loaded, probs = self.inference.run_images(
            CLASSIFY, resolved, request.images, deadline_of(context), context.is_active)
        labels = loaded.labels
        return inference_pb2.ClassifyResponse(
            model=spec_of(resolved),
            results=[common_pb2.Classification(predictions=predictions(row, labels, k))
                     for row in probs])

    def ClassifyStream(self, request_iterator: Iterator[inference_pb2.ClassifyStreamRequest],
                       context: grpc.ServicerContext
                       ) -> Iterator[inference_pb2.ClassifyStreamResponse]:
        """Requests are read on a thread and each goes decode -> batcher -> response through
        future callbacks, so one stream's requests batch with each other and with everyone
        else's; responses come back as they finish, each with its request_id. A request
        that does not parse, or the client's silence past the idle limit, ends the stream
        with its status once the requests already read have been answered."""
        out: queue.Queue[Any] = queue.Queue()
        window = threading.BoundedSemaphore(STREAM_WINDOW)
        state: dict[str, Any] = {"pending": 0, "reading": True, "error": None}
        lock = threading.Lock()
        end = object()

        def respond(response: inference_pb2.ClassifyStreamResponse) -> None:
            out.put(response)
            window.release()
            with lock:
                state["pending"] -= 1
                finished = not state["reading"] and state["pending"] == 0
            if finished:
                out.put(state["error"] or end)

        def fail(request_id: str, error: BaseException) -> None:
            code, message = status_for(error)
            respond(inference_pb2.ClassifyStreamResponse(
                request_id=request_id, error_code=code.name, error_message=message))

        def start(request: inference_pb2.ClassifyStreamRequest) -> None:
            rid = request.request_id
            try:
                resolved = self.inference.image_model(request.model.name, request.model.version,
                                                        "ClassifyStream")
                k = top_k_for(request.top_k, resolved)
                deadline = deadline_of(context)
                loaded = self.manager.acquire(CLASSIFY, resolved, deadline)
            except Exception as e:
                fail(rid, e)
                return
            try:
                reservation, _ = self.inference.reserve_images([request.image], loaded.size,
                                                               ["image"])
            except Exception as e:
                self.manager.release(loaded)
                fail(rid, e)
                return
            self.manager.begin_prepare(CLASSIFY, resolved)
            decoding = self.inference.pool.submit(self.inference.decode_one, request.image,
                                                  loaded, "image")

            def decoded(f: Future[np.ndarray]) -> None:
                self.manager.end_prepare(CLASSIFY, resolved)
                reservation.shrink(prepared_bytes(loaded.size))
                try:
                    batch = loaded.batcher.submit([f.result()], deadline, context.is_active)
                except BaseException as e:
                    reservation.release()
                    self.manager.release(loaded)
                    fail(rid, e)
                    return
                batch.add_done_callback(finished)

            def finished(f: Future[Any]) -> None:
                reservation.release()
                self.manager.release(loaded)
                try:
                    probs = f.result()
                    respond(inference_pb2.ClassifyStreamResponse(
                        request_id=rid, predictions=predictions(probs[0], loaded.labels, k)))
                except BaseException as e:
                    fail(rid, e)

            decoding.add_done_callback(decoded)

        def read() -> None:
            try:
                for request in request_iterator:
                    window.acquire()
                    with lock:
                        state["pending"] += 1
                    start(request)
            except Exception as e:  # a request that does not parse, or the client's silence
                state["error"] = e
            finally:
                with lock:
                    state["reading"] = False
                    finished = state["pending"] == 0
                if finished:
                    out.put(state["error"] or end)

        threading.Thread(target=read, name="classify-stream-reader", daemon=True).start()
        while True:
            try:
                item = out.get(timeout=1.0)
            except queue.Empty:
                if not context.is_active():
                    return
                continue
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def ClassifyText(self, request: inference_pb2.ClassifyTextRequest,
                     context: grpc.ServicerContext) -> inference_pb2.ClassifyTextResponse:
        resolved = self.inference.store.resolve(request.model.name, request.model.version)
        if resolved.task != TEXT_CLASSIFICATION or resolved.origin != FINETUNED:
            hint = ("it is a text backbone: fine-tune a classifier from it with CreateJob"
                    if resolved.spec is not None and resolved.spec.is_text
                    and resolved.origin == REGISTRY else "use Classify for images, Embed for "
                    "embeddings")
            raise InvalidInputError(f"{resolved.describe()} is not a fine-tuned text classifier; "
                                    f"{hint}")
        k = top_k_for(request.top_k, resolved)
        loaded, rows = self.inference.run_texts(TEXT_CLASSIFY, resolved, request.texts,
                                                deadline_of(context), context.is_active)
        return inference_pb2.ClassifyTextResponse(
            model=spec_of(resolved),
            results=[common_pb2.Classification(predictions=predictions(p, loaded.labels, k))
                     for p, _ in rows],
            truncated=sum(1 for _, cut in rows if cut))

    def Embed(self, request: inference_pb2.EmbedRequest, context: grpc.ServicerContext
              ) -> inference_pb2.EmbedResponse:
        if bool(request.texts) == bool(request.images):
            raise InvalidInputError("send either texts or images to embed (exactly one of them, "
                                    "non-empty)")
        resolved = self.inference.store.resolve(request.model.name, request.model.version)
        truncated = 0
        if request.texts:
            if resolved.is_image:
                raise InvalidInputError(f"{resolved.describe()} is an image model; send images "
                                        "to embed, or texts to a text model")
            if resolved.origin == FINETUNED:
                raise InvalidInputError(
                    f"{resolved.describe()} is a fine-tuned text classifier; embed texts with its "
                    f"base model {resolved.meta.get('base') if resolved.meta else ''}".rstrip())
            loaded, rows = self.inference.run_texts(TEXT_EMBED, resolved, request.texts,
                                                    deadline_of(context), context.is_active)
            vectors = np.stack([v for v, _ in rows])
            truncated = sum(1 for _, cut in rows if cut)
        else:
            if not resolved.is_image:
                raise InvalidInputError(f"{resolved.describe()} is a text model; send texts to "
                                        "embed, or images to an image model")
            loaded, vectors = self.inference.run_images(
                IMAGE_EMBED, resolved, request.images, deadline_of(context), context.is_active)
            vectors = np.asarray(vectors)
        if not request.no_normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return inference_pb2.EmbedResponse(
            model=spec_of(resolved), dimension=int(vectors.shape[1]), truncated=truncated,
            embeddings=[inference_pb2.Embedding(values=row.tolist()) for row in vectors])
