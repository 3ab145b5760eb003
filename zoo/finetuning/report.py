"""What a fine-tune leaves behind for people: metrics, plots and a model card.

Metrics are computed with numpy from the validation predictions (no scikit-learn at
run time); plots use matplotlib's Agg backend, so they render on headless servers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, classes: list[str], top_k: int = 5
) -> dict[str, Any]:
    """Accuracy, top-k accuracy, per-class precision/recall/F1 and the confusion matrix."""
    n = len(classes)
    predicted = probs.argmax(axis=1)
    k = min(top_k, n)
    top = np.argsort(-probs, axis=1)[:, :k]
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, name in enumerate(classes):
        tp = int(confusion[i, i])
        predicted_i = int(confusion[:, i].sum())
        actual_i = int(confusion[i, :].sum())
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / actual_i if actual_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4), "support": actual_i,
        }
    f1s = [c["f1"] for c in per_class.values()]
    return {
        "examples": int(len(labels)),
        "accuracy": round(float((predicted == labels).mean()), 4),
        f"top{k}_accuracy": round(float((top == labels[:, None]).any(axis=1).mean()), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "classes": classes,
    }


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if history.get(key):
                epochs = range(1, len(history[key]) + 1)
                ax.plot(epochs, history[key], style, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    size = max(4.0, 0.5 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > threshold else "black", fontsize=8)
    ax.set_title("confusion matrix (validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _task_lines(meta: dict[str, Any]) -> dict[str, str]:
    """The model card's lines that differ between image and text classifiers."""
    hp, training, inputs, data = meta["hyperparameters"], meta["training"], meta["input"], meta["data"]
    if meta["task"] != "text-classification":
        use = f"""```bash
zoo predict {meta['name']} image.jpg --top-k 3
```

```python
import zoo
model = zoo.load_model("{meta['name']}")   # a Keras model; input is raw RGB pixels 0..255
```"""
        what = (f"Input: {inputs['size'][0]}x{inputs['size'][1]} RGB, pixel values 0..255\n"
                f"(the model applies {inputs['preprocessing']!r} preprocessing itself).")
        recipe = (f"phase 1 trains a new head (global pooling, dropout {hp['dropout']}, dense) on "
                  f"the\n  frozen base{' from cached features' if training['cached_features'] else ''}")
        return {"use": use, "input": what, "examples": "images", "recipe": recipe,
                "dropped": f"{data['skipped']} unreadable file(s) skipped", "layers": "layers"}
    use = f"""```bash
zoo predict {meta['name']} --text "your text" --top-k 3
```"""
    if inputs.get("kind") == "tokens":
        what = (f"Input: texts, tokenized with {meta['base']}'s WordPiece vocabulary (at most "
                f"{inputs['max_length']} tokens; longer texts are truncated). model.keras takes "
                "`token_ids` and `padding_mask` and holds the fine-tuned backbone, "
                f"{inputs['pooling']} pooling and the head.")
    else:
        what = (f"Input: texts, embedded by {meta['base']} (at most {inputs['max_length']} "
                "tokens; longer texts are truncated); model.keras is the head that takes its "
                f"{inputs['size'][0]}-dimensional normalised sentence embeddings.")
    recipe = (f"phase 1 trains a new head (standardisation, dropout {hp['dropout']}, dense) on\n"
              "  the frozen base's cached sentence embeddings")
    return {"use": use, "input": what, "examples": "texts", "recipe": recipe,
            "dropped": f"{data.get('truncated', 0)} text(s) truncated",
            "layers": "transformer layers"}


def model_card(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    """A README.md for the fine-tuned model directory."""
    hp = meta["hyperparameters"]
    k_key = next(k for k in metrics if k.startswith("top") and k.endswith("_accuracy"))
    rows = "\n".join(
        f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for name, m in metrics["per_class"].items()
    )
    counts = ", ".join(f"{k}: {v}" for k, v in meta["data"]["class_counts"].items())
    task = _task_lines(meta)
    unfrozen = meta["training"]["unfrozen_layers"]
    phase2 = (f"phase 2 unfroze the top {unfrozen} {task['layers']} at learning rate "
              f"{hp['learning_rate'] * hp['fine_tune_lr_factor']:g}" if unfrozen else "no phase 2")
    return f"""# {meta['name']}

A {meta['task']} model fine-tuned with Zoo from **{meta['base']}**
({meta['base_family']}, {meta['base_params']:,} parameters pretrained on {meta['base_weights']}).

## Use

{task['use']}

{task['input']}

## Classes

{len(meta['labels'])} classes: {', '.join(meta['labels'])}

## Training

- data: `{meta['data']['source']}`; {meta['data']['train_examples']} training and
  {meta['data']['val_examples']} validation {task['examples']} ({counts});
  {task['dropped']}
- recipe: {task['recipe']};
  {phase2}
- epochs run: {meta['training']['epochs_run']}; batch size {hp['batch_size']}; learning rate
  {hp['learning_rate']:g}; augmentation {'on' if hp['augment'] else 'off'}; label smoothing
  {hp['label_smoothing']}; seed {hp['seed']}

## Validation metrics

- accuracy: **{metrics['accuracy']:.4f}**
- {k_key.replace('_', ' ')}: {metrics[k_key]:.4f}
- macro F1: {metrics['macro_f1']:.4f}

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

Plots: `plots/training_curves.png`, `plots/confusion_matrix.png`. TensorBoard: `tensorboard --logdir logs`.
"""


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
