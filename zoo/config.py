"""Settings read from the environment at call time (never frozen at import).

Tests and long-running servers change these between calls, so every reader asks
again instead of caching a module-level constant.
"""

from __future__ import annotations

import os
from pathlib import Path

KERAS_ORIGIN_BASE = "https://storage.googleapis.com/"
_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def zoo_home() -> Path:
    """Root of Zoo's cache and model store: `$ZOO_HOME`, default `~/.cache/zoo`."""
    home = os.environ.get("ZOO_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "zoo"


def offline() -> bool:
    """`ZOO_OFFLINE=1` (or Hugging Face's `HF_HUB_OFFLINE=1`): never touch the network."""
    return _flag("ZOO_OFFLINE") or _flag("HF_HUB_OFFLINE")


def keras_mirror() -> str | None:
    """`ZOO_KERAS_MIRROR`: a base URL or directory that replaces Google storage."""
    value = os.environ.get("ZOO_KERAS_MIRROR", "").strip()
    return value or None


def hf_endpoint() -> str | None:
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def hf_cache_dir() -> Path:
    """Where huggingface_hub keeps snapshots: `$HF_HUB_CACHE`, else `$HF_HOME/hub`."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home).expanduser() if hf_home else Path.home() / ".cache" / "huggingface"
    return base / "hub"


def hf_token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def timeouts() -> tuple[float, float]:
    """(connect, read) seconds for HTTP downloads: `ZOO_CONNECT_TIMEOUT`, `ZOO_READ_TIMEOUT`."""
    return (
        float(os.environ.get("ZOO_CONNECT_TIMEOUT", "10")),
        float(os.environ.get("ZOO_READ_TIMEOUT", "60")),
    )


def max_retries() -> int:
    return int(os.environ.get("ZOO_MAX_RETRIES", "5"))
