"""Whether Ray is installed (and new enough): `zoo serve --ray` checks before anything loads."""

from __future__ import annotations

from zoo_server.errors import ServerError

RAY_MIN_VERSION = (2, 60)
INSTALL_HINT = "pip install 'zoo[ray]' (Ray 2.60 or later)"


def require_ray() -> None:
    """Fail with one line that names the fix when Ray is missing or too old."""
    try:
        import ray
    except ImportError:
        raise ServerError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    version = tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())
    if version < RAY_MIN_VERSION:
        raise ServerError(f"--ray needs Ray 2.60 or later, found {ray.__version__}: "
                          f"{INSTALL_HINT}")
