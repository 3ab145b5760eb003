"""What every inference front shares (zoo.v1's InferenceService, the Open Inference Protocol):
the model store, the loaded models, the decoding pool, deadlines, and the limits on what one
request may cost.

A request's inputs are counted first (`max_inputs`, before anything is decoded or a model
loaded). Its images' headers are read, and the memory their decoding and prepared inputs
take is reserved in the decode budget (zoo_server.budget). Then they are decoded and
prepared (resized, scaled) in this thread for one image and in the decoding pool for more,
and go to the model's batcher, where they batch with every other request for the same
model, whichever API it came through.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import numpy as np

from zoo.errors import InvalidInputError
from zoo.hub.spec import TEXT_CLASSIFICATION
from zoo.vision.images import ImageHeader, decode, read_header
from zoo_server.budget import MemoryBudget, Reservation
from zoo_server.config import ServerConfig
from zoo_server.errors import LimitExceededError, RequestDeadlineError
from zoo_server.manager import Loaded, ModelManager
from zoo_server.store import ModelStore, Resolved

_BYTES_IO = re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>")
# A prepared input waiting for its batch: the model's height x width x 3 channels of float32.
PREPARED_BYTES_PER_PIXEL = 12
T = TypeVar("T")


def deadline_at(remaining: float | None) -> float | None:
    """A call's deadline on the time.monotonic() clock from the seconds it has left; None
    when it has none."""
    if remaining is None or remaining > 1e7:
        return None
    return time.monotonic() + remaining


def wait_result(future: Future[Any], deadline: float | None) -> Any:
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise RequestDeadlineError("the deadline passed while the request waited for its "
                                   "model") from None


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    if not texts:
        raise InvalidInputError(f"{what} is empty: send a non-empty list of texts")
    for i, text in enumerate(texts):
        if not text.strip():
            raise InvalidInputError(f"{what}[{i}] is empty or only whitespace")
    return list(texts)


def prepared_bytes(size: tuple[int, int] | None) -> int:
    """Memory of one prepared input at the model's input size."""
    return 0 if size is None else size[0] * size[1] * PREPARED_BYTES_PER_PIXEL


class Inference:
    """What the inference handlers share: the store, the models, the decoding pool, the decode
    budget."""

    def __init__(self, config: ServerConfig, store: ModelStore, manager: ModelManager):
        self.config, self.store, self.manager = config, store, manager
        self.pool = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="decode")
        self.budget = MemoryBudget(config.decode_budget_bytes)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def check_count(self, count: int, what: str) -> None:
        """At most `max_inputs` inputs in one request, checked before anything is decoded."""
        if count > self.config.max_inputs:
            raise LimitExceededError(
                f"{count:,} {what} in one request, over the server's limit of "
                f"{self.config.max_inputs:,} (--max-inputs); send them in several requests")

    def _named(self, what: str, work: Callable[[], T]) -> T:
        """`work`'s InvalidInputError worded for the client's input `what`."""
        try:
            return work()
        except InvalidInputError as e:
            message = _BYTES_IO.sub("the bytes", str(e))
            message = message[len("image: "):] if message.startswith("image: ") else message
            raise InvalidInputError(f"{what}: {message}") from None

    def header(self, data: bytes, what: str) -> ImageHeader:
        if not data:
            raise InvalidInputError(f"{what} is empty (0 bytes); send encoded image bytes")
        return self._named(what, lambda: read_header(data,
                                                     max_pixels=self.config.max_image_pixels))

    def reserve_images(self, images: Sequence[bytes], size: tuple[int, int] | None,
                       names: Sequence[str] | None = None) -> tuple[Reservation, int]:
        """Read the images' headers (format and pixels checked, nothing decoded) and reserve
        their decoding and prepared inputs in the decode budget; returns the reservation
        and how many may decode at once."""
        names = names or [f"images[{i}]" for i in range(len(images))]
        headers = [self.header(data, what) for data, what in zip(images, names, strict=True)]
        parallel = 1 if len(images) == 1 else min(len(images), self.config.decode_workers)
        what = "this image" if len(images) == 1 else f"these {len(images)} images"
        return self.budget.reserve(len(images) * prepared_bytes(size),
                                   max(h.decode_bytes for h in headers), parallel, what)

    def decode_one(self, data: bytes, loaded: Loaded, what: str) -> np.ndarray:
        """Encoded bytes -> the model's prepared input (decoded, resized, scaled)."""
        assert loaded.size is not None and loaded.prepare is not None
        return loaded.prepare(self.decode(data, loaded.size, what))

    def decode(self, data: bytes, size: tuple[int, int], what: str) -> np.ndarray:
        if not data:
            raise InvalidInputError(f"{what} is empty (0 bytes); send encoded image bytes")
        return self._named(what, lambda: decode(data, size,
                                                max_pixels=self.config.max_image_pixels))

    def decode_all(self, images: Sequence[bytes], loaded: Loaded, parallel: int = 0
                   ) -> list[np.ndarray]:
        """Decode and prepare `images`, at most `parallel` (0: all) at once in the pool."""
        if len(images) == 1:  # no hop through the pool for the common single image
            return [self.decode_one(images[0], loaded, "images[0]")]
        parallel = parallel or len(images)
        results: list[Any] = [None] * len(images)
        pending: dict[Future[np.ndarray], int] = {}
        following = 0
        try:
            while following < len(images) or pending:
                while following < len(images) and len(pending) < parallel:
                    future = self.pool.submit(self.decode_one, images[following], loaded,
                                              f"images[{following}]")
                    pending[future] = following
                    following += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results[pending.pop(future)] = future.result()
        finally:
            for future in pending:
                future.cancel()
        return results

    def image_model(self, name: str, version: int, what: str) -> Resolved:
        resolved = self.store.resolve(name, version)
        if not resolved.is_image:
            hint = ("ClassifyText" if resolved.task == TEXT_CLASSIFICATION else "Embed")
            raise InvalidInputError(f"{resolved.describe()} is a {resolved.task} model; {what} "
                                    f"takes image models (use {hint})")
        return resolved

    def run_images(self, kind: str, resolved: Resolved, images: Sequence[bytes],
                   deadline: float | None, is_active: Callable[[], bool] | None = None
                   ) -> tuple[Loaded, Any]:
        """Count the images, reserve their memory, decode and prepare them (in this thread
        for one, in the pool for more) and run them through the model's batcher."""
        self.check_count(len(images), "images")
        with self.manager.use(kind, resolved, deadline) as loaded:
            reservation, parallel = self.reserve_images(images, loaded.size)
            with reservation:
                self.manager.begin_prepare(kind, resolved)
                try:
                    inputs = self.decode_all(images, loaded, parallel)
                finally:
                    self.manager.end_prepare(kind, resolved)
                reservation.shrink(len(images) * prepared_bytes(loaded.size))
                future = loaded.batcher.submit(inputs, deadline, is_active)
                return loaded, wait_result(future, deadline)

    def run_pixels(self, kind: str, resolved: Resolved, pixels: Sequence[np.ndarray],
                   deadline: float | None, is_active: Callable[[], bool] | None = None
                   ) -> tuple[Loaded, Any]:
        """Run (H, W, 3) RGB pixel arrays (0..255, the model's size) through the batcher,
        prepared as decoded images are."""
        self.check_count(len(pixels), "images")
        with self.manager.use(kind, resolved, deadline) as loaded:
            assert loaded.size is not None and loaded.prepare is not None
            for image in pixels:
                if image.shape != (*loaded.size, 3):
                    raise InvalidInputError(
                        f"{resolved.describe()} takes pixels of {loaded.size[0]}x"
                        f"{loaded.size[1]}, got {'x'.join(map(str, image.shape[:2]))}")
            reservation, _ = self.budget.reserve(len(pixels) * prepared_bytes(loaded.size),
                                                 what=f"these {len(pixels)} images")
            with reservation:
                inputs = [loaded.prepare(np.asarray(image, np.float32)) for image in pixels]
                future = loaded.batcher.submit(inputs, deadline, is_active)
                return loaded, wait_result(future, deadline)

    def run_texts(self, kind: str, resolved: Resolved, texts: Sequence[str],
                  deadline: float | None, is_active: Callable[[], bool] | None = None
                  ) -> tuple[Loaded, Any]:
        """Run texts through the model's batcher (an encoder or a text classifier)."""
        self.check_count(len(texts), "texts")
        items = check_texts(texts)
        with self.manager.use(kind, resolved, deadline) as loaded:
            return loaded, wait_result(loaded.batcher.submit(items, deadline, is_active),
                                       deadline)
