"""Text classification: a head on the real MiniLM's embeddings, from Python and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SENTIMENT = ROOT / "tests" / "fixtures" / "sentiment.csv"
FAST = {"epochs": 30, "learning_rate": 1e-2, "patience": 0}


def test_sentiment_head_reaches_high_held_out_accuracy(tmp_path: Path) -> None:
    events: list[dict] = []
    result = zoo.finetune("minilm_l6_v2", SENTIMENT, tmp_path / "sentiment", on_event=events.append,
                          **FAST)
    assert result.metrics["accuracy"] >= 0.85
    assert result.classes == ["negative", "positive"]
    assert result.meta["task"] == "text-classification"
    for name in ("model.keras", "zoo.json", "metrics.json", "README.md", "plots/training_curves.png"):
        assert (tmp_path / "sentiment" / name).is_file(), name
    assert [e["event"] for e in events][:3] == ["data", "features", "phase"]

    from zoo.text_classifier import TextClassifier

    classifier = TextClassifier.load(tmp_path / "sentiment")
    top = classifier.classify(["An absolutely wonderful evening, I loved it",
                               "A dreadful, boring waste of time"], top_k=1)
    assert [p[0].label for p in top] == ["positive", "negative"]


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty"),
        ("cols.csv", b"sentence,label\nhi,a\n", "needs columns `text` and `label`"),
        ("one.csv", b"text,label\nhi,a\nho,a\n", "a classifier needs at least 2"),
        ("blank.csv", b"text,label\nhi,a\n  ,b\n", "line 3: the text is empty"),
        ("latin1.csv", b"text,label\ncaf\xe9,a\nhi,b\n", "line 2 is not valid UTF-8"),
        ("bad.jsonl", b'{"text": "hi", "label": "a"}\n{"text": "x"}\n', 'line 2 needs "text" and "label"'),
    ],
)
def test_bad_text_data_gets_clear_errors(tmp_path, name, content, message) -> None:
    with pytest.raises(zoo.InvalidInputError, match=message):
        zoo.finetune("minilm_l6_v2", write(tmp_path, name, content), tmp_path / "out", epochs=1)


def test_long_texts_are_truncated_and_counted(tmp_path, caplog) -> None:
    rows = [{"text": ("great " * 400) if i == 0 else f"good thing {i}", "label": "pos"}
            for i in range(10)] + [{"text": f"bad thing {i}", "label": "neg"} for i in range(10)]
    data = write(tmp_path, "long.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    with caplog.at_level("WARNING", logger="zoo"):
        result = zoo.finetune("minilm_l6_v2", data, tmp_path / "out", epochs=2)
    assert "1 text(s) longer than 256 tokens were truncated" in caplog.text
    assert result.meta["data"]["truncated"] == 1


def test_cli_finetune_and_predict_text(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "zoo.cli.main"]
    out = tmp_path / "sentiment-cli"
    trained = subprocess.run([*cli, "finetune", "minilm_l6_v2", "--data", str(SENTIMENT),
                              "--out", str(out), "--epochs", "30", "--learning-rate", "0.01",
                              "--patience", "0"],
                             capture_output=True, text=True, env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert "done: validation accuracy" in trained.stdout
    predicted = subprocess.run([*cli, "predict", str(out), "--text", "I really loved it",
                                "--top-k", "1", "--json"], capture_output=True, text=True,
                               env=env, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)[0]["predictions"][0]["label"] == "positive"
