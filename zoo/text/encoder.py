"""Sentence embeddings from the registry's text models: normalise, tokenize, pack, run, pool.

`embed("minilm_l6_v2", texts)` gives one vector per text, computed the way
Sentence-Transformers computes it from the same Hugging Face snapshot:

1. Normalise each text as the snapshot's BERT tokenizer does (Hugging Face's
   `BertNormalizer`): drop control and format characters, turn every kind of whitespace
   into a space, strip accents and lower-case for uncased models. keras-hub's WordPiece
   pretokenizer differs on exactly these points (it case-folds with NFKC, splits words at
   control characters instead of dropping them, and keeps non-ASCII spaces inside words),
   so Zoo normalises first and leaves keras-hub's tokenizer to split words and look up
   word pieces in the snapshot's `vocab.txt`.
2. `[CLS] pieces [SEP]`, truncated to the model's maximum length; every truncation is
   counted and logged.
3. The keras-hub backbone as a compiled TensorFlow function, on batches of texts sorted
   by length, each padded only to its longest text and holding at most
   `TextEncoder.TOKENS_PER_PASS` tokens (see `_Runner` for when XLA compiles).
4. Pooling as the snapshot's `1_Pooling/config.json` says (mean over the attention mask
   for MiniLM), else the spec's pooling (`cls` for BERT and DistilBERT); then L2
   normalisation, as the snapshot's `Normalize` module does.

Loaded models are cached per name in the process (`load_encoder`), so a server embeds
every request with the same tokenizer, weights and compiled functions.
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.hub.fetch import fetch_weights
from zoo.hub.registry import get_spec
from zoo.hub.spec import ModelSpec

if TYPE_CHECKING:
    import keras

log = logging.getLogger("zoo")

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")

# Sentence-Transformers' pooling flags (1_Pooling/config.json) -> Zoo's pooling modes.
_ST_POOLING = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}

# The keras-hub tokenizer class for each backbone whose snapshot carries a WordPiece vocab.
_WORDPIECE_TOKENIZERS = {
    "BertBackbone": "BertTokenizer",
    "DistilBertBackbone": "DistilBertTokenizer",
}


# --- Text normalisation ------------------------------------------------------------------

# ASCII fast path of BertNormalizer's clean_text: tab, newline and carriage return become
# spaces; every other control character (form feed and DEL included) is dropped.
_ASCII_CLEAN = {c: None for c in (*range(0x20), 0x7F)} | {ord(c): " " for c in "\t\n\r"}


class BertNormalizer:
    """What Hugging Face's `BertNormalizer` does to a text before it is split into words.

    clean_text: U+0000, U+FFFD and every character of Unicode category C (control,
    format, private use, unassigned) except tab, newline and carriage return are dropped;
    whitespace of any kind becomes a space. Then, for uncased models, accents are
    stripped (NFD, combining marks removed) and the text is lower-cased.
    """

    def __init__(self, lowercase: bool = True, strip_accents: bool | None = None):
        import regex  # keras-hub's dependency, for Unicode property classes

        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self._drop = regex.compile(r"(?V1)[[\p{C}\uFFFD]--[\t\n\r]]")
        self._space = regex.compile(r"\p{White_Space}")
        self._marks = regex.compile(r"\p{Mn}")

    def __call__(self, text: str) -> str:
        if text.isascii():
            text = text.translate(_ASCII_CLEAN)
        else:
            text = self._space.sub(" ", self._drop.sub("", text))
            if self.strip_accents:
                text = self._marks.sub("", unicodedata.normalize("NFD", text))
        return text.lower() if self.lowercase else text


# --- Inputs --------------------------------------------------------------------------------


def check_texts(texts: Iterable[str], what: str = "texts") -> list[str]:
    """`texts` as a list of non-empty strings, or an InvalidInputError naming the bad one."""
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError(f"{what} must be a list of strings, not one string; wrap it: [text]")
    try:
        items = list(texts)
    except TypeError:
        raise InvalidInputError(
            f"{what} must be a list of strings, not {type(texts).__name__}"
        ) from None
    if not items:
        raise InvalidInputError(f"{what} is empty: give at least one text to embed")
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidInputError(
                f"{what}[{i}] is {type(text).__name__}, not a string"
                + ("; decode bytes first" if isinstance(text, bytes) else "")
            )
        if not text.strip():
            raise InvalidInputError(f"{what}[{i}] is empty or only whitespace; remove it or give text")
    return items


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --- Snapshot configuration -----------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"{path} is not readable JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} does not hold a JSON object")
    return data


def read_pooling(snapshot: Path, spec: ModelSpec) -> str:
    """The pooling the snapshot's Sentence-Transformers config names, else the spec's."""
    path = snapshot / "1_Pooling" / "config.json"
    if path.is_file():
        config = _read_json(path)
        flags = [k for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
        modes = [_ST_POOLING[k] for k in flags if k in _ST_POOLING]
        if len(flags) == 1 and modes:
            return modes[0]
        raise InvalidInputError(
            f"{spec.name}: {path} asks for pooling {', '.join(flags) or 'none'}; Zoo pools "
            f"with exactly one of {', '.join(_ST_POOLING)}"
        )
    if spec.head.pooling in POOLING_MODES:
        return spec.head.pooling
    raise InvalidInputError(
        f"{spec.name} names no pooling (neither 1_Pooling/config.json nor its spec); "
        f"it cannot be used for embeddings"
    )


def _length_bucket(length: int, limit: int) -> int:
    """`length` rounded up to a few compiled shapes: steps of 8 to 64, 16 to 128, 32 to 256,
    then 64; never past `limit`."""
    step = 8 if length <= 64 else 16 if length <= 128 else 32 if length <= 256 else 64
    return min(-(-length // step) * step, limit)


# --- The compiled backbone -----------------------------------------------------------------


class _Runner:
    """Backbone + pooling as compiled TensorFlow functions, for any batch shape.

    Every batch runs through a `tf.function` traced once for (None, None) shapes: no
    retracing, no compilation, padded only to the batch's longest text. A shape that keeps
    coming back (batch rows x length rounded up by `_length_bucket`) is worth an XLA
    compilation (1-4 s per shape on 2 CPU cores; then 0.9-1.7x the plain graph's speed in
    our measurements, most on long texts): once a shape has carried `XLA_AFTER_TOKENS`
    padded tokens over the life of the process, counting the batches a call is about to
    run, it runs XLA-compiled at its bucketed length. So a one-off `zoo embed` never waits
    for XLA, while a server or a big file gets compiled kernels for the shapes it uses most.
    """

    XLA_AFTER_TOKENS = 1 << 14

    def __init__(self, backbone: keras.Model, pooling: str):
        import tensorflow as tf

        self.backbone = backbone
        self.pooling = pooling
        self.input_names = set(backbone.input) if isinstance(backbone.input, dict) else set()
        signature = [
            tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
        ]
        self._graph = tf.function(self._forward, input_signature=signature, autograph=False)
        self._xla = tf.function(
            self._forward, input_signature=signature, jit_compile=True, autograph=False
        )
        self._tokens: Counter[tuple[int, int]] = Counter()
        self._lock = threading.Lock()

    def _forward(self, token_ids: Any, padding_mask: Any) -> Any:
        import tensorflow as tf

        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        if "segment_ids" in self.input_names:
            inputs["segment_ids"] = tf.zeros_like(token_ids)
        outputs = self.backbone(inputs, training=False)
        hidden = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tf.cast(padding_mask, hidden.dtype)[:, :, None]
        if self.pooling == "max":  # padding set to -1e9 first, as Sentence-Transformers does
            return tf.reduce_max(hidden * mask + (1.0 - mask) * -1e9, axis=1)
        total = tf.reduce_sum(hidden * mask, axis=1)
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
        return total / (tf.sqrt(count) if self.pooling == "mean_sqrt_len" else count)

    def plan(self, shapes: Sequence[tuple[int, int]], jit_compile: bool | None) -> list[bool]:
        """Count the batches about to run; True for each that should run XLA-compiled.

        `jit_compile=True` compiles every shape of the call (and keeps it compiled);
        False compiles none; None leaves it to the counts.
        """
        with self._lock:
            for rows, length in shapes:
                self._tokens[(rows, length)] += rows * length
                if jit_compile:
                    self._tokens[(rows, length)] = max(
                        self._tokens[(rows, length)], self.XLA_AFTER_TOKENS
                    )
            if jit_compile is False:
                return [False] * len(shapes)
            return [self._tokens[s] >= self.XLA_AFTER_TOKENS for s in shapes]

    def compiled_shapes(self) -> set[tuple[int, int]]:
        """The (rows, length) shapes that run XLA-compiled from now on."""
        with self._lock:
            return {s for s, n in self._tokens.items() if n >= self.XLA_AFTER_TOKENS}

    def __call__(self, token_ids: np.ndarray, padding_mask: np.ndarray, xla: bool) -> np.ndarray:
        function = self._xla if xla else self._graph
        return np.asarray(function(token_ids, padding_mask))


# --- Encoders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packed:
    """Texts as a model eats them: `[CLS] pieces [SEP] [PAD]...`, one row per text."""

    token_ids: np.ndarray  # (texts, length) int32
    padding_mask: np.ndarray  # (texts, length) int32, 1 on real tokens
    truncated: list[int]  # indices of the texts cut to fit the maximum length


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (texts, dim) float32
    truncated: list[int]  # indices of the texts cut to fit the maximum length


@dataclass(frozen=True)
class Match:
    """One document of `most_similar`: its position in the input, text and cosine."""

    index: int
    text: str
    score: float


class TextEncoder:
    """A registered text model ready to embed: normaliser, tokenizer, backbone, pooling.

    Build one with `load_encoder(name)`, which caches it; one encoder may serve several
    threads at once.
    """

    # Long texts go through the model in smaller passes: at most this many (padded) tokens
    # a pass keeps the activations in cache. Measured on one core: 128 texts of 72 tokens
    # ran 2.2x faster XLA-compiled in passes of 16 than in one pass of 128, and 128 of 24
    # tokens 1.4x faster as a plain graph in passes of 32; bench/embed.py at batch 128
    # went from 0.75-0.95x sentence-transformers' speed to 1.5-1.6x. Short texts still
    # fill `batch_size`.
    TOKENS_PER_PASS = 1024
    # Passes run two at a time (TensorFlow releases the GIL): one pass's many small ops
    # leave cores idle that the other fills. On 2 cores: +25% sentences/s at batch 32,
    # +0-24% at batch 128, in the same process, alternating.
    PARALLEL_PASSES = 2

    def __init__(self, spec: ModelSpec, snapshot: Path, backbone: keras.Model | None = None):
        if not spec.is_text:
            raise InvalidInputError(
                f"{spec.name} is an image model; embeddings need a text model "
                "(see `zoo list --task text-embedding`)"
            )
        tokenizer_name = _WORDPIECE_TOKENIZERS.get(spec.architecture)
        if tokenizer_name is None:
            raise InvalidInputError(
                f"{spec.name} ({spec.architecture}) has no WordPiece tokenizer; Zoo embeds "
                f"with {', '.join(_WORDPIECE_TOKENIZERS)} models"
            )
        import keras_hub

        self.spec = spec
        self.name = spec.name
        self.snapshot = snapshot
        config_path = snapshot / "tokenizer_config.json"
        config = _read_json(config_path) if config_path.is_file() else {}
        self.normalize = BertNormalizer(
            lowercase=bool(config.get("do_lower_case", True)),
            strip_accents=config.get("strip_accents"),
        )
        # Normalised already: keras-hub only splits words and looks up word pieces.
        self.tokenizer = getattr(keras_hub.tokenizers, tokenizer_name)(
            vocabulary=str(snapshot / "vocab.txt"),
            lowercase=False,
            strip_accents=False,
            split_on_cjk=bool(config.get("tokenize_chinese_chars", True)),
        )
        self.cls_id = int(self.tokenizer.cls_token_id)
        self.sep_id = int(self.tokenizer.sep_token_id)
        self.pad_id = int(self.tokenizer.pad_token_id)
        if backbone is None:
            backbone = getattr(keras_hub.models, spec.architecture).from_preset(str(snapshot))
        self.backbone = backbone
        positions = int(getattr(backbone, "max_sequence_length", 512))
        self.max_length = min(spec.input.max_length or positions, positions)
        self.dim = int(backbone.hidden_dim)
        self.pooling = read_pooling(snapshot, spec)
        self._run = _Runner(backbone, self.pooling)

    def __repr__(self) -> str:
        return (
            f"TextEncoder({self.name!r}, dim={self.dim}, max_length={self.max_length}, "
            f"pooling={self.pooling!r})"
        )

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's word-piece ids: normalised, without [CLS]/[SEP], not truncated."""
        pieces = self.tokenizer.tokenize([self.normalize(t) for t in texts])
        return [list(p) for p in pieces]

    def _rows(self, pieces: Sequence[list[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
        """[CLS] pieces [SEP] [PAD]..., each row cut to fit `length`."""
        ids = np.full((len(pieces), length), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(pieces), length), dtype=np.int32)
        keep = length - 2
        for row, piece in enumerate(pieces):
            tokens = [self.cls_id, *piece[:keep], self.sep_id]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask

    def pack(self, texts: Iterable[str], length: int | None = None) -> Packed:
        """`[CLS] pieces [SEP]` padded to `length` (default: the model's maximum length)."""
        items = check_texts(texts)
        length = self.max_length if length is None else _check_positive(length, "length")
        if not 2 < length <= self.max_length:
            raise InvalidInputError(f"length must be 3..{self.max_length}, got {length}")
        pieces = self.tokenize(items)
        truncated = [i for i, p in enumerate(pieces) if len(p) > length - 2]
        ids, mask = self._rows(pieces, length)
        return Packed(ids, mask, truncated)

    def _batches(self, pieces: Sequence[list[int]], batch_size: int) -> tuple[list[np.ndarray], list[int]]:
        """The texts' indices in batches, and each batch's longest packed length.

        Longest first, as Sentence-Transformers does: each batch holds texts of similar
        length, so little of it is padding. A batch has at most `batch_size` rows and
        `TOKENS_PER_PASS` tokens at its bucketed length (at least one row).
        """
        keep = self.max_length - 2
        lengths = np.array([min(len(p), keep) + 2 for p in pieces])
        order = np.argsort(-lengths, kind="stable")
        batches = []
        start = 0
        while start < len(pieces):  # order[start] is the longest text left
            bucket = _length_bucket(int(lengths[order[start]]), self.max_length)
            rows = max(1, min(batch_size, self.TOKENS_PER_PASS // bucket))
            batches.append(order[start : start + rows])
            start += rows
        return batches, [int(lengths[b].max()) for b in batches]

    def pack_batches(
        self, texts: Iterable[str], *, batch_size: int = 32
    ) -> tuple[list[tuple[np.ndarray, Packed]], list[int]]:
        """`texts` packed in batches the way `encode` runs them, for a model that takes tokens.

        Returns ([(indices into texts, Packed), ...], indices of the truncated texts): each
        batch is padded to its longest text, cut at the model's maximum length; a batch's
        `Packed.truncated` counts its own rows.
        """
        items = check_texts(texts)
        batch_size = _check_positive(batch_size, "batch_size")
        pieces = self.tokenize(items)
        keep = self.max_length - 2
        truncated = [i for i, p in enumerate(pieces) if len(p) > keep]
        batches, longest = self._batches(pieces, batch_size)
        packed = []
        for rows, length in zip(batches, longest, strict=True):
            ids, mask = self._rows([pieces[i] for i in rows], length)
            cut = [j for j, i in enumerate(rows) if len(pieces[i]) > keep]
            packed.append((rows, Packed(ids, mask, cut)))
        return packed, truncated

    def encode(
        self,
        texts: Iterable[str],
        *,
        batch_size: int = 32,
        normalize: bool = True,
        jit_compile: bool | None = None,
    ) -> Embeddings:
        """Embeddings of `texts` and which of them were truncated (nothing is logged).

        `jit_compile`: None (default) XLA-compiles the batch shapes that recur (see
        `_Runner`); True compiles every shape this call runs, e.g. to warm a server up
        for the traffic it expects; False runs the uncompiled graph only.
        """
        items = check_texts(texts)
        batch_size = _check_positive(batch_size, "batch_size")
        pieces = self.tokenize(items)
        truncated = [i for i, p in enumerate(pieces) if len(p) > self.max_length - 2]
        batches, longest = self._batches(pieces, batch_size)
        shapes = [(len(b), _length_bucket(n, self.max_length)) for b, n in zip(batches, longest, strict=True)]
        compiled = self._run.plan(shapes, jit_compile)
        vectors = np.empty((len(items), self.dim), dtype=np.float32)

        def run(job: tuple[np.ndarray, int, tuple[int, int], bool]) -> None:
            batch, exact, (_, bucket), xla = job
            ids, mask = self._rows([pieces[i] for i in batch], bucket if xla else exact)
            vectors[batch] = self._run(ids, mask, xla)

        jobs = list(zip(batches, longest, shapes, compiled, strict=True))
        if self.PARALLEL_PASSES > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(min(self.PARALLEL_PASSES, len(jobs))) as pool:
                list(pool.map(run, jobs))  # each pass fills its own rows of `vectors`
        else:
            for job in jobs:
                run(job)
        if normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors /= np.maximum(norms, 1e-12)
        return Embeddings(vectors, truncated)


# --- The cache and the public functions ---------------------------------------------------

_ENCODERS: dict[str, TextEncoder] = {}
_LOCKS: dict[str, threading.Lock] = {}
_CACHE_LOCK = threading.Lock()


def load_backbone(spec: ModelSpec) -> keras.Model:
    """A registered text model's keras-hub backbone, read from its verified snapshot."""
    import keras_hub

    if not spec.is_text:
        raise InvalidInputError(f"{spec.name} is an image model, not a text backbone")
    return getattr(keras_hub.models, spec.architecture).from_preset(str(fetch_weights(spec)))


def load_encoder(name: str | ModelSpec) -> TextEncoder:
    """The encoder of a registered text model, built once per process and then reused."""
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    with _CACHE_LOCK:
        if spec.name in _ENCODERS:
            return _ENCODERS[spec.name]
        lock = _LOCKS.setdefault(spec.name, threading.Lock())
    with lock:  # one thread builds it; the others wait and take the same one
        if spec.name not in _ENCODERS:
            if not spec.is_text:  # before fetching anything
                raise InvalidInputError(
                    f"{spec.name} is an image model; embeddings need a text model "
                    "(see `zoo list --task text-embedding`)"
                )
            encoder = TextEncoder(spec, fetch_weights(spec))
            with _CACHE_LOCK:
                _ENCODERS[spec.name] = encoder
        return _ENCODERS[spec.name]


def unload_encoder(name: str | None = None) -> None:
    """Forget one cached encoder (or all of them); the next use loads it again."""
    with _CACHE_LOCK:
        if name is None:
            _ENCODERS.clear()
        else:
            _ENCODERS.pop(get_spec(name).name, None)


ModelLike = str | TextEncoder


def _encoder(model: ModelLike) -> TextEncoder:
    if isinstance(model, TextEncoder):
        return model
    if isinstance(model, str):
        return load_encoder(model)
    raise InvalidInputError(
        f"model must be a registered model name or a TextEncoder, not {type(model).__name__}"
    )


def _report(encoder: TextEncoder, result: Embeddings, total: int) -> None:
    if result.truncated:
        shown = ", ".join(str(i) for i in result.truncated[:5])
        more = ", ..." if len(result.truncated) > 5 else ""
        log.warning(
            "%s: %d of %d texts were longer than %d tokens and were truncated (texts %s%s)",
            encoder.name, len(result.truncated), total, encoder.max_length, shown, more,
        )


def embed(
    model: ModelLike, texts: Iterable[str], *, batch_size: int = 32, normalize: bool = True
) -> np.ndarray:
    """One embedding per text, shape (len(texts), dim), float32.

    `model` is a registered text model's name (loaded once, then cached) or a
    `TextEncoder`. With `normalize` (the default) every vector has unit length, so dot
    products are cosine similarities. `batch_size` is the most texts the model runs at
    once; long texts run in smaller passes (`TextEncoder.TOKENS_PER_PASS`). The result
    does not depend on it. Texts longer than the model's maximum length are truncated,
    and how many were is logged as a warning on the "zoo" logger.
    """
    items = check_texts(texts)  # bad input fails before a model loads
    batch_size = _check_positive(batch_size, "batch_size")
    encoder = _encoder(model)
    result = encoder.encode(items, batch_size=batch_size, normalize=normalize)
    _report(encoder, result, len(items))
    return result.vectors


def most_similar(
    model: ModelLike,
    query: str,
    documents: Iterable[str],
    *,
    top_k: int | None = None,
    batch_size: int = 32,
) -> list[Match]:
    """`documents` ranked by cosine similarity to `query`, best first (the top `top_k`)."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("the query must be a non-empty string")
    docs = check_texts(documents, "documents")
    if top_k is not None:
        top_k = _check_positive(top_k, "top_k")
    batch_size = _check_positive(batch_size, "batch_size")
    encoder = _encoder(model)
    result = encoder.encode([query, *docs], batch_size=batch_size, normalize=True)
    _report(encoder, result, len(docs) + 1)
    scores = result.vectors[1:] @ result.vectors[0]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [Match(int(i), docs[i], float(scores[i])) for i in order]


__all__ = [
    "BertNormalizer",
    "load_backbone",
    "Embeddings",
    "Match",
    "Packed",
    "TextEncoder",
    "embed",
    "load_encoder",
    "most_similar",
    "unload_encoder",
]
