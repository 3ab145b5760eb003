"""A malformed manifest is a clear error that names the entry, never a KeyError later."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import zoo
from zoo.errors import ManifestError
from zoo.hub.manifest import load_manifest, parse_manifest

GOOD = json.loads(load_manifest().path.read_text())


def broken(mutate) -> dict:
    data = copy.deepcopy(GOOD)
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["models"]["vgg16"]["files"].pop("notop"), r"model 'vgg16'.*'top' and 'notop'"),
        (lambda d: d["models"]["vgg16"]["files"]["top"].update(hash="md5:xyz"), r"model 'vgg16'.*hash"),
        (lambda d: d["models"]["vgg16"]["files"]["top"].update(origin="ftp://x/y.h5"), r"vgg16.*https"),
        (lambda d: d["models"]["vgg16"]["files"]["top"].update(size=-1), r"vgg16.*size"),
        (lambda d: d["models"]["vgg16"]["files"]["top"].update(filename="../../etc/passwd"), r"vgg16.*unsafe"),
        (lambda d: d["models"]["resnet50"].update(source="ftp"), r"resnet50.*unknown source"),
        (lambda d: d["models"]["minilm_l6_v2"].pop("repo_id"), r"minilm_l6_v2.*repo_id"),
        (lambda d: d["models"]["bert_base_uncased"].update(revision="main"),
         r"bert_base_uncased.*revision 'main' is not a commit"),
        (lambda d: d["models"]["distilbert_base_uncased"].update(revision="12040acc"),
         r"distilbert_base_uncased.*not a commit"),
        (lambda d: d["models"]["bert_base_uncased"]["files"]["vocab.txt"].update(hash=None),
         r"bert_base_uncased' file 'vocab.txt'.*sha256"),
        (lambda d: d["models"]["minilm_l6_v2"]["files"]["config.json"].update(
            hash="md5:" + "0" * 32),
         r"minilm_l6_v2' file 'config.json'.*sha256"),
        (lambda d: d.update(format_version=7), r"format_version"),
    ],
)
def test_malformed_entries_name_the_entry(mutate, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(broken(mutate), Path("weights_manifest.json"))


def test_unparseable_manifest_file_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    monkeypatch.setenv("ZOO_MANIFEST", str(bad))
    with pytest.raises(ManifestError, match="not valid JSON"):
        zoo.fetch_weights("vgg16")


def test_manifest_file_round_trips_through_the_generator_format() -> None:
    manifest = load_manifest()
    vgg = manifest.model("vgg16").files["top"]
    assert vgg.origin == (
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    )
    assert str(vgg.checksum) == "md5:64373286793e3c8b2b4e3219cbf3544b"
    assert manifest.model("mobilenet_v2").files["top"].checksum is None
    assert manifest.asset("imagenet_class_index").checksum is not None


@pytest.mark.parametrize("name", ["bert_base_uncased", "distilbert_base_uncased", "minilm_l6_v2"])
def test_hub_models_are_pinned_to_a_commit_and_every_file_hash(name: str) -> None:
    entry = load_manifest().model(name)
    assert entry.revision is not None and len(entry.revision) == 40
    for file in entry.files.values():
        assert file.checksum is not None and file.checksum.algorithm == "sha256"
        assert file.size is not None and file.size > 0
    assert {"config.json", "model.safetensors", "vocab.txt"} <= set(entry.files)


def test_bert_and_minilm_share_their_vocabulary_bytes() -> None:
    """A cross-check of the hand-recorded pins: bert-base-uncased's vocab.txt is the same
    file as MiniLM's, whose hash comes from the installed package."""
    files = {name: load_manifest().model(name).files["vocab.txt"]
             for name in ("bert_base_uncased", "distilbert_base_uncased", "minilm_l6_v2")}
    assert len({(f.size, str(f.checksum)) for f in files.values()}) == 1
