"""The decode budget: bytes of decoded and prepared images in flight, across every request.

Decoding is where a request's size on the wire turns into memory. 10,000 tiny PNGs (well
under a megabyte in one Classify) cost 1.2 GB once decoded and prepared; one 8000x8000
PNG of a few hundred kilobytes takes half a gigabyte while it decodes. So before a request
decodes anything it reserves what its images will take, from what their headers say
(zoo.vision.images.ImageHeader.decode_bytes) and the model's input size, and the
reservation shrinks to the prepared inputs once they are decoded and ends when their batch
has run. A reservation that does not fit is refused at once (RESOURCE_EXHAUSTED, naming
the setting), as a full queue is: waiting for room would hold RPC threads instead.
"""

from __future__ import annotations

import threading
from types import TracebackType

from zoo_server.errors import LimitExceededError

MIB = 1 << 20


class Reservation:
    """Bytes held in a budget until `release` (or the end of a `with` block)."""

    def __init__(self, budget: MemoryBudget, nbytes: int):
        self._budget, self.nbytes = budget, nbytes

    def shrink(self, nbytes: int) -> None:
        """Keep only `nbytes` (a request's decoding is over; its prepared inputs remain)."""
        if nbytes < self.nbytes:
            self._budget._give_back(self.nbytes - nbytes)
            self.nbytes = nbytes

    def release(self) -> None:
        self.shrink(0)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


class MemoryBudget:
    def __init__(self, limit: int, setting: str = "--decode-budget-mb"):
        self.limit, self.setting = limit, setting
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        with self._lock:
            return self._used

    def reserve(self, fixed: int, each: int = 0, parallel: int = 1, what: str = "this request"
                ) -> tuple[Reservation, int]:
        """Reserve `fixed` bytes and `each` bytes for as many of `parallel` concurrent
        tasks as fit (at least one); returns the reservation and that number.

        A request of many images reserves its prepared inputs (`fixed`) and the decoding of
        as many images at once as the budget has room for (`each`: its largest image), so
        it decodes more slowly when memory is short instead of failing."""
        with self._lock:
            free = self.limit - self._used
            if fixed + each > free:
                need = fixed + each
                raise LimitExceededError(
                    f"decoding {what} needs about {_mb(need)} MB and {_mb(max(free, 0))} MB of "
                    f"the server's decode budget ({_mb(self.limit)} MB, {self.setting}) is "
                    "free; retry, or send fewer or smaller images" if need <= self.limit else
                    f"decoding {what} needs about {_mb(need)} MB, more than the server's "
                    f"decode budget ({_mb(self.limit)} MB, {self.setting}); send fewer or "
                    "smaller images")
            count = max(1, min(parallel, (free - fixed) // each if each else parallel))
            nbytes = fixed + count * each
            self._used += nbytes
        return Reservation(self, nbytes), count

    def _give_back(self, nbytes: int) -> None:
        with self._lock:
            self._used -= nbytes


def _mb(nbytes: int) -> str:
    return f"{nbytes / MIB:,.0f}" if nbytes >= MIB else f"{nbytes / MIB:.2f}"
