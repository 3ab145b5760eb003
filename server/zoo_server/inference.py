"""What every inference front shares (zoo.v1's InferenceService, the Open Inference Protocol):
the model store, the loaded models, the decoding pool, deadlines.

A request's images are decoded and prepared (resized, scaled) in this thread for one image
and in the decoding pool for more, then go to the model's batcher, where they batch with
every other request for the same model, whichever API it came through.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.hub.spec import TEXT_CLASSIFICATION
from zoo.vision.images import decode
from zoo_server.config import ServerConfig
from zoo_server.errors import RequestDeadlineError
from zoo_server.manager import Loaded, ModelManager
from zoo_server.store import ModelStore, Resolved

_BYTES_IO = re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>")


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


class Inference:
    """What the inference handlers share: the store, the models, the decoding pool."""

    def __init__(self, config: ServerConfig, store: ModelStore, manager: ModelManager):
        self.config, self.store, self.manager = config, store, manager
        self.pool = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="decode")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def decode_one(self, data: bytes, loaded: Loaded, what: str) -> np.ndarray:
        """Encoded bytes -> the model's prepared input (decoded, resized, scaled)."""
        assert loaded.size is not None and loaded.prepare is not None
        return loaded.prepare(self.decode(data, loaded.size, what))

    def decode(self, data: bytes, size: tuple[int, int], what: str) -> np.ndarray:
        if not data:
            raise InvalidInputError(f"{what} is empty (0 bytes); send encoded image bytes")
        try:
            return decode(data, size, max_pixels=self.config.max_image_pixels)
        except InvalidInputError as e:
            message = _BYTES_IO.sub("the bytes", str(e))
            message = message[len("image: "):] if message.startswith("image: ") else message
            raise InvalidInputError(f"{what}: {message}") from None

    def decode_all(self, images: Sequence[bytes], loaded: Loaded) -> list[np.ndarray]:
        if len(images) == 1:  # no hop through the pool for the common single image
            return [self.decode_one(images[0], loaded, "images[0]")]
        futures = [self.pool.submit(self.decode_one, data, loaded, f"images[{i}]")
                   for i, data in enumerate(images)]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

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
        """Decode and prepare `images` (in this thread for one, in the pool for more) and run
        them through the model's batcher."""
        with self.manager.use(kind, resolved, deadline) as loaded:
            self.manager.begin_prepare(kind, resolved)
            try:
                inputs = self.decode_all(images, loaded)
            finally:
                self.manager.end_prepare(kind, resolved)
            future = loaded.batcher.submit(inputs, deadline, is_active)
            return loaded, wait_result(future, deadline)

    def run_pixels(self, kind: str, resolved: Resolved, pixels: Sequence[np.ndarray],
                   deadline: float | None, is_active: Callable[[], bool] | None = None
                   ) -> tuple[Loaded, Any]:
        """Run (H, W, 3) RGB pixel arrays (0..255, the model's size) through the batcher,
        prepared as decoded images are."""
        with self.manager.use(kind, resolved, deadline) as loaded:
            assert loaded.size is not None and loaded.prepare is not None
            for image in pixels:
                if image.shape != (*loaded.size, 3):
                    raise InvalidInputError(
                        f"{resolved.describe()} takes pixels of {loaded.size[0]}x"
                        f"{loaded.size[1]}, got {'x'.join(map(str, image.shape[:2]))}")
            inputs = [loaded.prepare(np.asarray(image, np.float32)) for image in pixels]
            future = loaded.batcher.submit(inputs, deadline, is_active)
            return loaded, wait_result(future, deadline)

    def run_texts(self, kind: str, resolved: Resolved, texts: Sequence[str],
                  deadline: float | None, is_active: Callable[[], bool] | None = None
                  ) -> tuple[Loaded, Any]:
        """Run texts through the model's batcher (an encoder or a text classifier)."""
        items = check_texts(texts)
        with self.manager.use(kind, resolved, deadline) as loaded:
            return loaded, wait_result(loaded.batcher.submit(items, deadline, is_active),
                                       deadline)


