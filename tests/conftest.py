"""Every test gets its own empty caches; nothing here touches a real home folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of logs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "zoo_home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for var in (
        "ZOO_OFFLINE", "HF_HUB_OFFLINE", "ZOO_KERAS_MIRROR", "HF_ENDPOINT", "HF_TOKEN",
        "HF_HUB_CACHE", "ZOO_MANIFEST", "XDG_CACHE_HOME",
    ):
        monkeypatch.delenv(var, raising=False)
    # Retries back off for real; keep the waits short so fault tests stay fast.
    monkeypatch.setenv("ZOO_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("ZOO_READ_TIMEOUT", "5")
    return home


def zoo_cli_env(**extra: str) -> dict[str, str]:
    """The environment a `zoo` subprocess needs to see this test's settings."""
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


ZOO = [sys.executable, "-m", "zoo.cli.main"]
