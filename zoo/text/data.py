"""Labelled texts for fine-tuning: a CSV or JSONL file with `text` and `label`.

Every row is checked as it is read; a bad one is an InvalidInputError that names the file
and the line, so a user fixes the data before a model is ever built.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError


def read_text_dataset(path: str | Path) -> tuple[list[str], list[str]]:
    """(texts, labels) from a CSV or JSONL file with `text` and `label` columns."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise InvalidInputError(f"text dataset {source} does not exist (give a .csv or .jsonl file)")
    raw = source.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad_line = raw[: e.start].count(b"\n") + 1
        raise InvalidInputError(f"{source} line {bad_line} is not valid UTF-8; save the file as UTF-8") from None
    if not content.strip():
        raise InvalidInputError(f"{source} is empty; expected rows of text,label")
    rows: list[tuple[int, Any, Any]] = []
    if source.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{source} line {number} is not JSON: {e.msg}") from None
            if not isinstance(item, dict) or "text" not in item or "label" not in item:
                raise InvalidInputError(f"{source} line {number} needs \"text\" and \"label\" fields")
            rows.append((number, item["text"], item["label"]))
    else:
        reader = csv.DictReader(io.StringIO(content))
        columns = set(reader.fieldnames or [])
        if not {"text", "label"} <= columns:
            raise InvalidInputError(
                f"{source} needs columns `text` and `label`; it has {', '.join(sorted(columns)) or 'none'}")
        rows = [(number, row["text"], row["label"]) for number, row in enumerate(reader, start=2)]
    texts, labels = [], []
    for number, text, label in rows:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"{source} line {number}: the text is empty")
        if label is None or not str(label).strip():
            raise InvalidInputError(f"{source} line {number}: the label is empty")
        texts.append(text)
        labels.append(str(label).strip())
    if not texts:
        raise InvalidInputError(f"{source} has no rows; expected text,label")
    if len(set(labels)) < 2:
        raise InvalidInputError(
            f"{source} has 1 label ({labels[0]}); a classifier needs at least 2")
    return texts, labels
