"""Every test gets its own empty caches; nothing here touches a real home folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of logs

ROOT = Path(__file__).resolve().parent.parent
# What a subprocess needs on its path to import this checkout's zoo, zoo_server and
# zoo_client (not whatever copy is installed).
PYTHONPATH = os.pathsep.join(str(p) for p in (ROOT, ROOT / "client", ROOT / "server"))


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
    env["PYTHONPATH"] = PYTHONPATH
    return env


ZOO = [sys.executable, "-m", "zoo.cli.main"]


TINY = "mobilenet_v2_035_96"


@pytest.fixture(scope="session")
def pretrained_tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Origin URL -> file: TINY's top and no-top weights pretrained on digits, and a
    1000-class index (the real one cannot be fetched offline)."""
    import json

    from tests.keras_weights import write_pretrained_on_digits
    from zoo.hub.manifest import load_manifest

    folder = tmp_path_factory.mktemp("pretrained")
    top, notop = write_pretrained_on_digits(TINY, folder)
    index = folder / "imagenet_class_index.json"
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))
    entry = load_manifest().model(TINY)
    return {
        entry.files["top"].origin: top,
        entry.files["notop"].origin: notop,
        load_manifest().asset("imagenet_class_index").origin: index,
    }


@pytest.fixture()
def weight_server(pretrained_tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A local storage server holding TINY's weights, with ZOO_KERAS_MIRROR pointing at it."""
    from tests.keras_weights import write_mirror
    from tests.servers.static import StaticServer

    root = tmp_path / "storage"
    manifest = write_mirror(root, pretrained_tiny, tmp_path / "manifest.json")
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))
    with StaticServer(root) as server:
        monkeypatch.setenv("ZOO_KERAS_MIRROR", server.url)
        yield server
