"""`zoo info NAME [--json] [--runtime R]`: everything Zoo knows about one model and its weight
files; with `--runtime`, which runtime would run it here and why (this loads the model and
measures, so it imports TensorFlow); with `--server`, what the server says of it, the
runtime that serves it included."""

from __future__ import annotations

import argparse
from typing import Any

from zoo.cli import remote
from zoo.cli.output import format_params, print_json
from zoo.hub.fetch import cached_path, weight_files
from zoo.hub.manifest import load_manifest
from zoo.hub.registry import get_spec
from zoo.vision.runtimes import CHOICES


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("info", help="show a model's spec and weight files")
    parser.add_argument("name", help="registered model name, e.g. resnet50")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--runtime", choices=CHOICES,
                        help="image models: load it and say which runtime runs it and why "
                             "(auto: measure tf and OpenVINO here)")
    parser.set_defaults(run=run)


def describe(name: str) -> dict[str, Any]:
    spec = get_spec(name)
    entry = load_manifest().model(spec.name)
    files = [f.to_dict() for f in weight_files(spec)]
    data = spec.to_dict()
    snapshot = cached_path(spec.name) if entry.source == "huggingface" else None
    data["weights"] = {
        "source": entry.source,
        "repo_id": entry.repo_id,
        "revision": entry.revision,
        "package": entry.package.name if entry.package else None,
        "snapshot": str(snapshot) if snapshot else None,
        "files": files,
    }
    return data


def remote_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with remote.client(args) as zoo:
        info = zoo.get_model(args.name)
    data = {k: v for k, v in asdict(info).items() if k != "labels"}
    if args.json:
        print_json(data)
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        if value not in ("", (), {}, None):
            print(f"{key.ljust(width)}  {value}")
    return 0


def runtime_of(name: str, runtime: str) -> dict[str, Any]:
    from zoo.quiet import import_tensorflow

    import_tensorflow()
    from zoo.vision.classifier import load_classifier

    return load_classifier(name, runtime).report.to_dict()


def run(args: argparse.Namespace) -> int:
    if args.server:
        return remote_info(args)
    data = describe(args.name)
    if args.runtime:
        data["runtime"] = runtime_of(args.name, args.runtime)
    if args.json:
        print_json(data)
        return 0
    inp, head, prov = data["input"], data["head"], data["provenance"]
    lines = [
        ("name", data["name"]),
        ("task", data["task"]),
        ("family", data["family"]),
        ("architecture", f"{data['builder']}.{data['architecture']}"
         + (f" {data['builder_kwargs']}" if data["builder_kwargs"] else "")),
        ("parameters", f"{format_params(data['params'])} ({data['params']:,})" if data["params"] else "-"),
        ("input", "x".join(map(str, inp["size"])) + " RGB" if inp["size"] else f"{inp['max_length']} tokens"),
        ("preprocessing", inp["preprocessing"]),
        ("classes", f"{head['num_classes']} ({head['labels']})" if head["num_classes"] else "-"),
        ("pooling", head["pooling"] or "-"),
        ("top-1 / top-5", f"{prov['top1'] or '-'} / {prov['top5'] or '-'}"),
        ("license", prov["license"]),
        ("paper", prov["paper"] or "-"),
    ]
    weights = data["weights"]
    if weights["repo_id"]:
        lines.append(("hub repo", f"{weights['repo_id']}@{weights['revision']}"))
    if weights["package"]:
        lines.append(("offline package", weights["package"]))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    print("files:")
    for f in weights["files"]:
        mark = "cached" if f["cached"] else ""
        digest = (f"{f['hash']} (recorded at first download)" if f["recorded"]
                  else f["hash"] or "no pinned hash")
        print(f"  {f['key']:<8} {f['origin']}  {digest}  {mark}".rstrip())
    if weights["snapshot"]:
        print(f"snapshot: {weights['snapshot']}")
    if "runtime" in data:
        print(f"runtime: {data['runtime']['runtime']}: {data['runtime']['reason']}")
    return 0
