"""The registry covers every Keras application, and registry and manifest agree."""

from __future__ import annotations

import re

import pytest

import zoo
from zoo.hub.manifest import load_manifest
from zoo.hub.registry import list_models
from zoo.hub.spec import IMAGE_CLASSIFICATION, PREPROCESSING_MODES, TASKS

ALL = list_models()


def keras_application_classes() -> set[str]:
    keras = pytest.importorskip("keras")
    return {n for n in dir(keras.applications) if n[0].isupper()}


def test_every_keras_application_is_registered() -> None:
    registered = {s.architecture for s in ALL if s.builder == "keras.applications"}
    assert keras_application_classes() <= registered


def test_required_text_models_are_registered() -> None:
    names = {s.name for s in list_models(task=None)}
    assert {"minilm_l6_v2", "bert_base_uncased", "distilbert_base_uncased"} <= names


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_spec_is_well_formed(spec: zoo.ModelSpec) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.name)
    assert spec.task in TASKS
    assert spec.params and spec.params > 0
    if spec.task == IMAGE_CLASSIFICATION:
        assert spec.input.size and min(spec.input.size) >= 32
        assert spec.input.preprocessing in PREPROCESSING_MODES
        assert spec.head.num_classes == 1000 and spec.head.labels == "imagenet"
    else:
        assert spec.input.max_length and spec.head.pooling in ("mean", "cls")
    assert spec.to_dict()["name"] == spec.name


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_manifest_entry_matches_registry(spec: zoo.ModelSpec) -> None:
    entry = load_manifest().model(spec.name)
    if spec.builder == "keras.applications":
        assert entry.source == "keras"
        top, notop = entry.files["top"], entry.files["notop"]
        for f in (top, notop):
            assert f.origin == "https://storage.googleapis.com/" + f.origin.split(".com/", 1)[1]
            assert f.filename.endswith(".h5") and f.origin.endswith(".h5")
        assert top.filename != notop.filename
        if spec.family not in ("mobilenet", "mobilenet_v2"):
            assert top.checksum and notop.checksum, "Keras pins a checksum for this family"
    else:
        assert entry.source == "huggingface" and entry.repo_id and entry.revision
        assert {"config.json", "model.safetensors", "vocab.txt"} <= set(entry.files)


def test_manifest_has_no_orphans() -> None:
    assert set(load_manifest().models) == {s.name for s in ALL}


def test_minilm_files_are_pinned_to_the_package_bytes() -> None:
    entry = load_manifest().model("minilm_l6_v2")
    assert entry.package is not None
    assert all(f.checksum and f.checksum.algorithm == "sha256" for f in entry.files.values())


def test_get_spec_accepts_weight_tag_and_rejects_unknown() -> None:
    assert zoo.get_spec("resnet50.imagenet").name == "resnet50"
    assert zoo.get_spec("ResNet50").name == "resnet50"
    with pytest.raises(zoo.ModelNotFoundError, match="did you mean resnet50"):
        zoo.get_spec("resnet5")
    with pytest.raises(zoo.ModelNotFoundError):
        zoo.get_spec("resnet50.cifar10")


def test_list_models_filters_by_pattern_and_task() -> None:
    names = [s.name for s in zoo.list_models("efficientnet_b*")]
    assert names == [f"efficientnet_b{i}" for i in range(8)]
    text = zoo.list_models(task="text-embedding")
    assert [s.name for s in text] == ["minilm_l6_v2"]
    with pytest.raises(ValueError, match="unknown task"):
        zoo.list_models(task="segmentation")
