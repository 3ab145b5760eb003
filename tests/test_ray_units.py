"""Zoo on Ray's parts that need no cluster: settings, the model store, shards, job resources,
events, and a server without Ray that never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PYTHONPATH, ZOO
from zoo.errors import InvalidInputError
from zoo.finetuning.events import describe
from zoo_server.config import ServerConfig
from zoo_server.errors import ServerError


def test_ray_settings_need_ray_and_sane_bounds():
    with pytest.raises(InvalidInputError, match="--replicas, --model-store only apply with --ray"):
        ServerConfig(replicas=2, model_store="/shared")
    with pytest.raises(InvalidInputError, match="--min-replicas needs --max-replicas"):
        ServerConfig(ray="auto", min_replicas=2)
    with pytest.raises(InvalidInputError, match="1 <= --min-replicas <= --max-replicas"):
        ServerConfig(ray="auto", min_replicas=3, max_replicas=2)
    assert ServerConfig(ray="auto", replicas=3).replica_bounds == (3, 3)
    assert ServerConfig(ray="auto", max_replicas=4).replica_bounds == (1, 4)
    assert ServerConfig.from_env({"ZOO_SERVE_RAY": "10.0.0.5:6379",
                                  "ZOO_SERVE_JOB_RESOURCES": "trainer=1,big=0.5"}
                                 ).job_resources == ("trainer=1", "big=0.5")


def test_a_server_without_ray_never_imports_it():
    code = ("import sys, zoo_server.server, zoo_server.cli, zoo_server.jobs, "
            "zoo_server.manager; sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": PYTHONPATH}
                          ).returncode == 0


def test_zoo_serve_ray_without_ray_installed_names_the_fix(tmp_path):
    hidden = tmp_path / "no-ray"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    result = subprocess.run([*ZOO, "serve", "--ray", "auto", "--port", "0", "--home",
                             str(tmp_path / "home")], capture_output=True, text=True,
                            env={"PYTHONPATH": f"{hidden}:{PYTHONPATH}"}, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "zoo: error: --ray needs Ray, which is not installed: pip install 'zoo[ray]' "
        "(Ray 2.60 or later)")


def test_shards_are_whole_batches_in_order():
    from zoo_server.scale.features import shard_bounds

    assert shard_bounds(300, 2, 64) == [(0, 192), (192, 300)]
    assert shard_bounds(640, 3, 64) == [(0, 256), (256, 448), (448, 640)]
    assert shard_bounds(64, 4, 64) == [(0, 64)]
    for n, shards in [(1, 3), (129, 3), (1000, 7), (6400, 4)]:
        bounds = shard_bounds(n, shards, 64)
        assert bounds[0][0] == 0 and bounds[-1][1] == n and len(bounds) <= shards
        assert all(a % 64 == 0 and b == c for (a, b), (c, _) in zip(bounds, bounds[1:], strict=False))


def test_job_resources_parse_or_name_the_fix():
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'zoo[ray]'")
    from zoo_server.scale.jobs import parse_resources

    assert parse_resources(("trainer=1", "big=0.5", "gpu_node")) == {
        "trainer": 1.0, "big": 0.5, "gpu_node": 1.0}
    for bad in ("trainer=lots", "=1", "x=0"):
        with pytest.raises(ServerError, match="is not NAME=AMOUNT"):
            parse_resources((bad,))


def test_the_model_store_hands_out_only_complete_folders(tmp_path):
    from zoo_server.scale.shared import MARKER, SharedStore

    store = SharedStore((tmp_path / "store").as_uri())
    model = tmp_path / "model"
    (model / "checkpoints").mkdir(parents=True)
    (model / "zoo.json").write_text("{}")
    (model / "weights" / "a.bin").parent.mkdir()
    (model / "weights" / "a.bin").write_bytes(b"\0" * 1000)
    (model / "checkpoints" / "phase1.keras").write_bytes(b"x")
    assert not store.has("models/m/1")
    with pytest.raises(FileNotFoundError, match="not in the model store"):
        store.get_dir("models/m/1", tmp_path / "copy")
    store.put_dir(model, "models/m/1", skip=("checkpoints",))
    (tmp_path / "store" / "models" / "half" / "1").mkdir(parents=True)  # no marker: a copy
    assert store.has("models/m/1") and not store.has("models/half/1")  # in progress
    copy = store.get_dir("models/m/1", tmp_path / "copy")
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == [
        MARKER, "weights", "weights/a.bin", "zoo.json"]
    assert SharedStore(str(tmp_path / "store")).has("models/m/1"), "a plain path works too"
    store.remove("models/m")
    assert not store.has("models/m/1")


def test_checkpoint_snapshots_put_the_state_last(tmp_path):
    from zoo_server.scale.shared import SharedStore

    store = SharedStore((tmp_path / "store").as_uri())
    local = tmp_path / "checkpoints"
    local.mkdir()
    assert not store.put_snapshot(local, "jobs/j/checkpoints", "state.json"), "nothing yet"
    (local / "phase1.keras").write_bytes(b"epoch 3")
    (local / "phase1.tmp.keras").write_bytes(b"half-written epoch 4")
    (local / "state.json").write_text('{"epoch": 3}')
    assert store.put_snapshot(local, "jobs/j/checkpoints", "state.json")
    assert store.read_text("jobs/j/checkpoints/state.json") == '{"epoch": 3}'
    back = tmp_path / "back"
    assert store.get_snapshot("jobs/j/checkpoints", back, "state.json")
    assert sorted(p.name for p in back.iterdir()) == ["phase1.keras", "state.json"]
    assert not store.get_snapshot("jobs/other/checkpoints", tmp_path / "none", "state.json")


def test_a_snapshot_lands_whole_while_training_writes_faster_than_the_store_copies(
        tmp_path, monkeypatch):
    """Each file the store receives is followed by a new epoch written locally (renamed over
    the old files, as the trainer does): the snapshot still lands, and it is one epoch whole."""
    from zoo_server.scale.shared import SharedStore

    store = SharedStore((tmp_path / "store").as_uri())
    local = tmp_path / "checkpoints"
    local.mkdir()

    def write_epoch(epoch: int) -> None:
        for name, text in (("phase1.keras", f"weights {epoch}"), ("state.json", f"{epoch}")):
            (local / f"{name}.tmp").write_text(text)
            (local / f"{name}.tmp").replace(local / name)

    write_epoch(1)
    put_file = store.fs.put_file
    epochs = iter(range(2, 100))

    def slow_put_file(source: str, target: str) -> None:
        put_file(source, target)
        write_epoch(next(epochs))

    monkeypatch.setattr(store.fs, "put_file", slow_put_file)  # fsspec shares its instances
    assert store.put_snapshot(local, "jobs/j/checkpoints", "state.json")
    back = tmp_path / "back"
    assert store.get_snapshot("jobs/j/checkpoints", back, "state.json")
    assert (back / "state.json").read_text() == "1"
    assert (back / "phase1.keras").read_text() == "weights 1"
    assert not [p for p in tmp_path.iterdir() if "snapshot" in p.name], "staging removed"


def test_cluster_job_events_in_words():
    assert describe({"event": "node", "node": "a" * 56, "address": "10.0.0.7",
                     "resumed_from_epoch": 4}) == (
        "running on Ray node aaaaaaaaaaaa (10.0.0.7), resuming from the checkpoint after "
        "epoch 4")
    assert describe({"event": "node_lost", "error": "node died", "resume_epoch": 0}) == (
        "the job's node was lost (node died); starting again on another node, from the start")


def test_frozen_features_match_phase_one_batches():
    """The shards' features are frozen_features over their own items: the same numbers as
    over the whole split, because shards are whole extraction batches."""
    from zoo.finetuning.image import FEATURE_BATCH
    from zoo.finetuning.image_data import Split
    from zoo_server.scale.features import shard_bounds, shard_of

    pixels = np.arange(200 * 2 * 2 * 3, dtype=np.uint8).reshape(200, 2, 2, 3)
    split = Split([Path(f"{i}.png") for i in range(200)], np.arange(200) % 3, pixels)
    parts = [shard_of(split, a, b, (2, 2)) for a, b in shard_bounds(200, 3, FEATURE_BATCH)]
    assert np.array_equal(np.concatenate([p.pixels for p in parts]), pixels)
    assert [len(p) for p in parts] == [128, 64, 8]


def test_sharded_features_are_for_image_bases(tmp_path):
    import zoo

    with pytest.raises(InvalidInputError, match="extract_features applies to image bases"):
        zoo.finetune("minilm_l6_v2", tmp_path / "reviews.csv", tmp_path / "out",
                     extract_features=lambda spec, size, split: np.zeros((len(split), 1)))


def test_replica_counters_keep_the_newest_reply_whatever_order_replies_arrive_in(monkeypatch):
    """Concurrent calls' replies reach the front door in any order: an older snapshot (fewer
    calls answered) must not replace a newer one, or GetModel under-reports a replica's work."""
    from zoo_server.scale.replicas import Replicas

    replicas = Replicas("app", "tiny")
    monkeypatch.setattr(replicas, "running", lambda: ["r1", "r2"])
    snapshot = {"node": "n", "batches": 1, "queued": 0, "in_flight": 0}
    replicas.record({"replica": "r1", "requests": 5, "inputs": 9, **snapshot})
    replicas.record({"replica": "r1", "requests": 4, "inputs": 7, **snapshot})  # arrives late
    replicas.record({"replica": "r2", "requests": 1, "inputs": 1, **snapshot})
    loads = {load.replica: load for load in replicas.loads()}
    assert (loads["r1"].requests, loads["r1"].inputs) == (5, 9)
    assert (loads["r2"].requests, loads["r2"].inputs) == (1, 1)
