"""Typed errors. Every message is one line that says what failed and how to fix it.

The CLI prints `str(error)` and exits 1; the gRPC server maps each type to a status
code. Callers catch types, never match message text.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every error Zoo raises on purpose."""


class ModelNotFoundError(ZooError, LookupError):
    """No model is registered (or saved) under that name."""


class InvalidInputError(ZooError, ValueError):
    """The caller passed something Zoo cannot use (bad image, bad argument, bad data)."""


class ManifestError(ZooError):
    """`weights_manifest.json` is malformed or disagrees with the registry."""


class WeightsNotFoundError(ZooError):
    """No source had the file: 404 everywhere, or a local path that does not exist."""


class ChecksumMismatchError(ZooError):
    """A file's bytes are not the ones the manifest pins; it was not kept."""


class OfflineError(ZooError):
    """Offline mode is on and the file is not in the cache."""


class NetworkError(ZooError):
    """The network failed after retries: timeouts, resets, server errors."""


class CacheError(ZooError):
    """The cache cannot be written (read-only, full) and does not already hold the file."""


class NonFiniteError(ZooError):
    """Training produced a loss, metric or score that is not a finite number (it diverged);
    nothing is saved or served."""


class RuntimeUnavailableError(ZooError):
    """The runtime asked for cannot run this model here: its package is not installed, the
    CPU lacks what it needs, or it failed its parity gate against TensorFlow."""


class ParityError(ZooError):
    """A converted or exported model does not compute what the Keras model computes."""
