"""`zoo finetune BASE --data DIR --out DIR [...]`: fine-tune a pretrained model on your data.

A readable line per event on stdout (`--json`: one JSON event per line, for machines);
the result is a model folder that `zoo predict` and `zoo serve` take as it is. The
hyper-parameter flags are made from zoo.finetuning.hyperparameters, the one schema the
library, the server and the client share; with `--server` the same flags go to CreateJob.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zoo.cli import remote
from zoo.cli.remote import RemoteError
from zoo.errors import InvalidInputError
from zoo.finetuning.events import describe
from zoo.finetuning.hyperparameters import HyperParameters, flag_of, rule
from zoo.quiet import import_tensorflow
from zoo.vision.runtimes import CHOICES, TF


def add_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per HyperParameters field; unset flags stay None (the library's default)."""
    group = parser.add_argument_group("hyper-parameters (defaults: the recipe's)")
    for f in dataclasses.fields(HyperParameters):
        r = rule(f.name)
        flag = flag_of(f.name)
        note = "" if f.default is None else f" (default {f.default})"
        if r.kind is bool:
            # A flag switches the default off or on: --augment, --no-feature-cache.
            group.add_argument(flag, dest=f.name, action="store_const", const=not f.default,
                               default=None, help=r.help + (" (images only)" if r.image_only
                                                            else ""))
            continue
        group.add_argument(flag, dest=f.name, type=r.kind, default=None,
                           metavar=f.name.split("_")[-1].upper(),
                           help=r.help + note + (" (images only)" if r.image_only else ""))


def hyperparameters_of(args: argparse.Namespace) -> dict[str, Any]:
    """The hyper-parameters set on the command line (unset ones are left to the defaults)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(HyperParameters)
            if getattr(args, f.name) is not None}


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("finetune", help="fine-tune a pretrained model on a folder of "
                                             "images or a text file")
    p.add_argument("base", help="registered base model, e.g. mobilenet_v2 or minilm_l6_v2")
    p.add_argument("--data", required=True, help="image folder (one subfolder per class), CSV "
                                                 "of path,label, or text CSV/JSONL")
    p.add_argument("--out", help="folder for the fine-tuned model (with --server: use --name)")
    p.add_argument("--val-data", help="explicit validation data (same layout as --data)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out "
                                                         "from its last checkpoint")
    p.add_argument("--export", choices=["savedmodel"], help="also write a TF Serving SavedModel")
    p.add_argument("--name", help="name to record the model under (default: the --out "
                                  "folder's name; not a registry model's name)")
    p.add_argument("--runtime", choices=CHOICES, default=TF,
                   help="what runs an image base's frozen forward pass in phase 1 (default tf; "
                        "auto measures tf and OpenVINO f32 and takes the faster)")
    p.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    add_hyperparameter_flags(p)
    p.set_defaults(run=run)


def run_remote(args: argparse.Namespace) -> int:
    """Upload the data, start a job on the server, follow it, report the served result."""
    name = args.name or (Path(args.out).name if args.out else None)
    if not name:
        raise InvalidInputError("with --server, name the result with --name")
    for flag, value in (("--val-data", args.val_data), ("--resume", args.resume),
                        ("--export", args.export), ("--runtime", args.runtime != TF)):
        if value:
            raise InvalidInputError(f"{flag} applies to local fine-tunes; a server job splits "
                                    "--val-split of the data and resumes by itself: drop it")
    with remote.client(args) as zoo:
        job = zoo.finetune(args.base, args.data, name=name, **hyperparameters_of(args))
        print(json.dumps({"event": "job", "id": job.id}) if args.json
              else f"job {job.id} {job.state} on {args.server}", flush=True)
        for event in zoo.watch_job(job.id):
            line = json.dumps(asdict(event)) if args.json else remote.job_event_line(event)
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
    HyperParameters.from_kwargs(**hyperparameters_of(args))  # bad values fail before TF loads
    import_tensorflow()
    from zoo.finetuning.api import finetune

    def emit(event: dict[str, Any]) -> None:
        line = json.dumps(event) if args.json else describe(event)
        if line:
            print(line, flush=True)

    result = finetune(args.base, args.data, args.out, val_data=args.val_data,
                      resume=args.resume, export=args.export, name=args.name, on_event=emit,
                      runtime=args.runtime, **hyperparameters_of(args))
    if not args.json:
        print(f"model: {result.model_path}")
        print(f"report: {result.output_dir / 'README.md'}, metrics.json, plots/")
    sys.stdout.flush()
    return 0
