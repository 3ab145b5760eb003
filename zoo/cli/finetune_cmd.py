"""`zoo finetune BASE --data DIR --out DIR [...]`: fine-tune a pretrained model on your data.

A readable line per epoch on stdout (`--json`: one JSON event per line, for machines);
the result is a model directory that `zoo predict` and `zoo serve` take as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from zoo.cli import remote
from zoo.cli.remote import RemoteError
from zoo.errors import InvalidInputError
from zoo.quiet import import_tensorflow


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("finetune", help="fine-tune a pretrained model on a folder of images or a text file")
    p.add_argument("base", help="registered base model, e.g. mobilenet_v2 or minilm_l6_v2")
    p.add_argument("--data", required=True, help="image folder (one subfolder per class), CSV of path,label, or text CSV/JSONL")
    p.add_argument("--out", help="folder for the fine-tuned model (with --server: use --name)")
    p.add_argument("--val-data", help="explicit validation data (same layout as --data)")
    p.add_argument("--val-split", type=float, default=0.2, help="validation share when --val-data is not given (default 0.2)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per phase (default 10)")
    p.add_argument("--fine-tune-layers", type=int, default=0, metavar="K", help="phase 2: unfreeze the top K layers of the base (text: its top K transformer layers)")
    p.add_argument("--fine-tune-fraction", type=float, metavar="F", help="phase 2: unfreeze the top fraction F of the base (images only)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, metavar="S", help="train at S x S pixels (default: the base's size)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--augment", action="store_true", help="random flip, rotation, zoom and contrast")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--class-weights", action="store_true", help="weight classes by inverse frequency (imbalanced data)")
    p.add_argument("--patience", type=int, default=3, help="early stopping patience on val_loss; 0 turns it off")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--no-feature-cache", action="store_true", help="run the frozen base on every epoch (slow; for comparison)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last checkpoint")
    p.add_argument("--export", choices=["savedmodel"], help="also write a TF Serving SavedModel")
    p.add_argument("--name", help="name to record the model under (default: the --out folder's name)")
    p.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    p.set_defaults(run=run)


def _human(event: dict[str, Any]) -> str | None:
    kind = event["event"]
    if kind == "data":
        skipped = f", {len(event['skipped'])} unreadable skipped" if event["skipped"] else ""
        return (f"data: {len(event['classes'])} classes, {event['train']} train / "
                f"{event['val']} validation examples{skipped}")
    if kind == "phase" and event["phase"] == 1:
        how = "cached features" if event["cached_features"] else "images through the frozen base"
        return f"phase 1: training the new head on {how}"
    if kind == "phase":
        length = (f", texts of {event['sequence_length']} tokens"
                  if "sequence_length" in event else "")
        return (f"phase 2: {event['unfrozen_layers']} top layers unfrozen, "
                f"learning rate {event['learning_rate']:g}{length}")
    if kind == "features":
        return f"features: {event['shape'][0]} x {event['shape'][1]} computed in {event['seconds']:.1f} s"
    if kind == "epoch":
        parts = [f"epoch {event['epoch']:>2}/{event['epochs']}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in event:
                parts.append(f"{key} {event[key]:.4f}")
        parts.append(f"{event['seconds']:.1f}s")
        return "  ".join(parts)
    if kind == "done":
        return f"done: validation accuracy {event['accuracy']:.4f} -> {event['output_dir']}"
    return None


def run_remote(args: argparse.Namespace) -> int:
    """Upload the data, start a job on the server, follow it, report the served result."""
    from pathlib import Path

    name = args.name or (Path(args.out).name if args.out else None)
    if not name:
        raise InvalidInputError("with --server, name the result with --name")
    hyperparameters = {
        "epochs": args.epochs, "fine_tune_layers": args.fine_tune_layers,
        "fine_tune_fraction": args.fine_tune_fraction, "batch_size": args.batch_size,
        "image_size": args.image_size, "learning_rate": args.learning_rate,
        "augment": args.augment, "val_split": args.val_split, "seed": args.seed,
        "label_smoothing": args.label_smoothing, "class_weights": args.class_weights,
        "patience": args.patience,
    }
    with remote.client(args) as zoo:
        job = zoo.finetune(args.base, args.data, name=name, **hyperparameters)
        print(json.dumps({"event": "job", "id": job.id}) if args.json
              else f"job {job.id} {job.state} on {args.server}", flush=True)
        for event in zoo.watch_job(job.id):
            line = json.dumps(asdict(event)) if args.json else remote.print_job_event(event)
            if line:
                print(line, flush=True)
        job = zoo.get_job(job.id)
    if job.state != "succeeded":
        raise RemoteError(f"job {job.id} {job.state}: {job.error or 'see `zoo jobs show`'}")
    if not args.json:
        print(f"served as {job.result} version {job.result_version}; try "
              f"`zoo --server {args.server} predict {job.result} IMAGE`")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.server:
        return run_remote(args)
    if not args.out:
        raise InvalidInputError("--out is required: the folder for the fine-tuned model")
    import_tensorflow()
    from zoo.finetuning.image import finetune

    def emit(event: dict[str, Any]) -> None:
        line = json.dumps(event) if args.json else _human(event)
        if line:
            print(line, flush=True)

    result = finetune(
        args.base, args.data, args.out, epochs=args.epochs,
        fine_tune_layers=args.fine_tune_layers, fine_tune_fraction=args.fine_tune_fraction,
        batch_size=args.batch_size, image_size=args.image_size, learning_rate=args.learning_rate,
        augment=args.augment, seed=args.seed, val_data=args.val_data, val_split=args.val_split,
        label_smoothing=args.label_smoothing, class_weights=args.class_weights,
        patience=args.patience, dropout=args.dropout, cache_features=not args.no_feature_cache,
        resume=args.resume, export=args.export, name=args.name, on_event=emit,
    )
    if not args.json:
        print(f"model: {result.model_path}")
        print(f"report: {result.output_dir / 'README.md'}, metrics.json, plots/")
    sys.stdout.flush()
    return 0


