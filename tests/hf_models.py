"""Tiny, randomly initialised BERT and DistilBERT snapshots in Hugging Face's format.

Each is what `transformers` saves for the real checkpoint, shrunk: `config.json`,
`model.safetensors` with the real parameter names (the masked-LM checkpoints' names:
`bert.`/`distilbert.` prefixes, BERT's LayerNorm `gamma`/`beta` as in
google-bert/bert-base-uncased, the MLM heads that keras-hub ignores), `vocab.txt`,
`tokenizer_config.json` and a `tokenizer.json`. Served from the local Hub under the
manifest's repo ids, they prove the fetch-convert-load path of the registry's BERT and
DistilBERT entries without their 440 MB and 270 MB of weights. The manifest pins the real
commits and hashes, so `pinned_manifest` writes a copy pinned to the tiny snapshots.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an is are was of to and in on at for with by from this that it he she they we "
    "you i man woman cat dog guitar playing play stock market fell today sharp ##ly ##s "
    "##ing ##ed ##er quick brown fox jump over lazy hello world good bad movie film great "
    "terrible love hate ."
).split()
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
# Every lower-case word can be spelled with the letters and ##letters, so nothing is [UNK].
VOCAB = list(
    dict.fromkeys(SPECIALS + list(".,!?'\"-()") + LETTERS + ["##" + c for c in LETTERS] + WORDS)
)

HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 32, 2, 4, 64, 64


def _init(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(0.0, 0.02, size=shape).astype(np.float32)


def _norm(prefix: str, tensors: dict[str, np.ndarray], weight: str = "weight", bias: str = "bias") -> None:
    tensors[f"{prefix}.{weight}"] = np.ones(HIDDEN, np.float32)
    tensors[f"{prefix}.{bias}"] = np.zeros(HIDDEN, np.float32)


def _linear(
    rng: np.random.Generator, prefix: str, out: int, inp: int, tensors: dict[str, np.ndarray]
) -> None:
    # torch.nn.Linear stores its weight as (out_features, in_features).
    tensors[f"{prefix}.weight"] = _init(rng, out, inp)
    tensors[f"{prefix}.bias"] = _init(rng, out)


def bert_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """BertForMaskedLM's state dict, as google-bert/bert-base-uncased names it."""
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {}
    p = "bert.embeddings"
    t[f"{p}.word_embeddings.weight"] = _init(rng, len(VOCAB), HIDDEN)
    t[f"{p}.position_embeddings.weight"] = _init(rng, POSITIONS, HIDDEN)
    t[f"{p}.token_type_embeddings.weight"] = _init(rng, 2, HIDDEN)
    _norm(f"{p}.LayerNorm", t, "gamma", "beta")
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            _linear(rng, f"{p}.attention.self.{name}", HIDDEN, HIDDEN, t)
        _linear(rng, f"{p}.attention.output.dense", HIDDEN, HIDDEN, t)
        _norm(f"{p}.attention.output.LayerNorm", t, "gamma", "beta")
        _linear(rng, f"{p}.intermediate.dense", INTERMEDIATE, HIDDEN, t)
        _linear(rng, f"{p}.output.dense", HIDDEN, INTERMEDIATE, t)
        _norm(f"{p}.output.LayerNorm", t, "gamma", "beta")
    _linear(rng, "bert.pooler.dense", HIDDEN, HIDDEN, t)
    # The masked-LM head: in the real checkpoint, and not part of the backbone.
    _linear(rng, "cls.predictions.transform.dense", HIDDEN, HIDDEN, t)
    _norm("cls.predictions.transform.LayerNorm", t, "gamma", "beta")
    t["cls.predictions.bias"] = np.zeros(len(VOCAB), np.float32)
    return t


def distilbert_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """DistilBertForMaskedLM's state dict, as distilbert/distilbert-base-uncased names it."""
    rng = np.random.default_rng(seed)
    t: dict[str, np.ndarray] = {}
    p = "distilbert.embeddings"
    t[f"{p}.word_embeddings.weight"] = _init(rng, len(VOCAB), HIDDEN)
    t[f"{p}.position_embeddings.weight"] = _init(rng, POSITIONS, HIDDEN)
    _norm(f"{p}.LayerNorm", t)
    for i in range(LAYERS):
        p = f"distilbert.transformer.layer.{i}"
        for name in ("q_lin", "k_lin", "v_lin", "out_lin"):
            _linear(rng, f"{p}.attention.{name}", HIDDEN, HIDDEN, t)
        _norm(f"{p}.sa_layer_norm", t)
        _linear(rng, f"{p}.ffn.lin1", INTERMEDIATE, HIDDEN, t)
        _linear(rng, f"{p}.ffn.lin2", HIDDEN, INTERMEDIATE, t)
        _norm(f"{p}.output_layer_norm", t)
    _linear(rng, "vocab_transform", HIDDEN, HIDDEN, t)
    _norm("vocab_layer_norm", t)
    t["vocab_projector.bias"] = np.zeros(len(VOCAB), np.float32)
    return t


def bert_config() -> dict[str, object]:
    return {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": len(VOCAB),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }


def distilbert_config() -> dict[str, object]:
    return {
        "architectures": ["DistilBertForMaskedLM"],
        "model_type": "distilbert",
        "vocab_size": len(VOCAB),
        "dim": HIDDEN,
        "n_layers": LAYERS,
        "n_heads": HEADS,
        "hidden_dim": INTERMEDIATE,
        "activation": "gelu",
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "max_position_embeddings": POSITIONS,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "sinusoidal_pos_embds": False,
    }


def tokenizer_json() -> dict[str, object]:
    """A fast-tokenizer file equivalent to vocab.txt + tokenizer_config.json."""
    ids = {token: i for i, token in enumerate(VOCAB)}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": ids[t], "content": t, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for t in SPECIALS
        ],
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]}
                               for t in ("[CLS]", "[SEP]")},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids},
    }


def write_snapshot(kind: str, folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write the `kind` ("bert" or "distilbert") snapshot; returns repo path -> file."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if kind == "bert":
        config, tensors = bert_config(), bert_tensors(seed)
    elif kind == "distilbert":
        config, tensors = distilbert_config(), distilbert_tensors(seed)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": 512})
    )
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json()))
    return {p.name: p for p in folder.iterdir()}


def pinned_manifest(path: Path, snapshots: dict[str, tuple[str, dict[str, Path]]]) -> Path:
    """A copy of the weights manifest whose entries for `snapshots` (model name -> (commit,
    repo path -> file)) pin that commit and those files' sizes and sha256, as the real
    entries pin the real ones. Point ZOO_MANIFEST at it."""
    from zoo.hub.manifest import load_manifest

    data = json.loads(load_manifest().path.read_text(encoding="utf-8"))
    for name, (commit, files) in snapshots.items():
        entry = data["models"][name]
        entry["revision"] = commit
        entry["files"] = {
            repo_path: {"size": file.stat().st_size,
                        "hash": "sha256:" + hashlib.sha256(file.read_bytes()).hexdigest()}
            for repo_path, file in files.items()
        }
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    return path
