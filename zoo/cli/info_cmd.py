"""`zoo info NAME [--json]`: everything Zoo knows about one model and its weight files."""

from __future__ import annotations

import argparse
from typing import Any

from zoo.cli.output import format_params, print_json
from zoo.hub.fetch import cached_path, weight_files
from zoo.hub.manifest import load_manifest
from zoo.hub.registry import get_spec


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("info", help="show a model's spec and weight files")
    parser.add_argument("name", help="registered model name, e.g. resnet50")
    parser.add_argument("--json", action="store_true", help="print JSON")
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


def run(args: argparse.Namespace) -> int:
    data = describe(args.name)
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
    return 0
