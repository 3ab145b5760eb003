"""`zoo list [PATTERN] [--task T] [--json]`: the registry as a table or JSON."""

from __future__ import annotations

import argparse
import fnmatch

from zoo.cli import remote
from zoo.cli.output import format_params, print_json, print_table
from zoo.hub.fetch import cached_path
from zoo.hub.registry import list_models
from zoo.hub.spec import TASKS, ModelSpec
from zoo.model_dir import list_local


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("list", help="list registered models")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'resnet*'")
    parser.add_argument("--task", choices=TASKS, help="only models of this task")
    parser.add_argument("--local", action="store_true", help="list fine-tuned models instead")
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.set_defaults(run=run)


def summary(spec: ModelSpec) -> dict[str, object]:
    size = spec.input.size
    return {
        "name": spec.name,
        "task": spec.task,
        "family": spec.family,
        "params": spec.params,
        "input_size": list(size) if size else spec.input.max_length,
        "top1": spec.provenance.top1,
        "top5": spec.provenance.top5,
        "cached": cached_path(spec.name) is not None,
    }


def run_local(args: argparse.Namespace) -> int:
    rows = [r for r in list_local() if fnmatch.fnmatchcase(r["name"], args.pattern)]
    if args.json:
        print_json(rows)
    elif not rows:
        print("no fine-tuned models yet; make one with `zoo finetune BASE --data DIR --out DIR`")
    else:
        print_table(
            ("NAME", "TASK", "BASE", "CLASSES", "ACCURACY", "PATH"),
            [(r["name"], r["task"], r["base"], r["classes"],
              f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-", r["path"])
             for r in rows],
        )
    return 0


def run_remote(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with remote.client(args) as zoo:
        models = zoo.list_models("" if args.pattern == "*" else args.pattern, task=args.task)
    if args.local:
        models = [m for m in models if m.origin == "finetuned"]
    if args.json:
        print_json([asdict(m) for m in models])
        return 0
    print_table(
        ("NAME", "VERSION", "TASK", "PARAMS", "INPUT", "TOP-1", "LOADED"),
        [(m.name, m.version or "-", m.task, format_params(m.params),
          "x".join(map(str, m.input_size)) if m.input_size else f"{m.max_length} tokens",
          f"{m.top1:.1f}" if m.top1 is not None else "-", "yes" if m.loaded else "")
         for m in models],
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.server:
        return run_remote(args)
    if args.local:
        return run_local(args)
    rows = [summary(spec) for spec in list_models(args.pattern, task=args.task)]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no model matches {args.pattern!r}" + (f" with task {args.task}" if args.task else ""))
        return 0
    print_table(
        ("NAME", "TASK", "PARAMS", "INPUT", "TOP-1", "CACHED"),
        [
            (
                r["name"],
                r["task"],
                format_params(r["params"]),  # type: ignore[arg-type]
                "x".join(map(str, r["input_size"])) if isinstance(r["input_size"], list)
                else f"{r['input_size']} tokens",
                f"{r['top1']:.1f}" if r["top1"] is not None else "-",
                "yes" if r["cached"] else "",
            )
            for r in rows
        ],
    )
    return 0
