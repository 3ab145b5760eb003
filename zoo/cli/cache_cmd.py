"""`zoo cache list|verify|remove`: what the cache holds, whether it is intact, and cleanup."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo import config
from zoo.cli.output import print_json, print_table
from zoo.errors import InvalidInputError
from zoo.hub import cache
from zoo.hub.fetch import hub_snapshot
from zoo.hub.manifest import FileEntry, load_manifest
from zoo.hub.registry import get_spec


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("cache", help="inspect, verify or clean the weight cache")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for action, help_text in (
        ("list", "list cached weight files"),
        ("verify", "re-hash cached files against the manifest"),
        ("remove", "delete cached weights of models"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("names", nargs="*", metavar="NAME", help="models (default: all cached)")
        if action == "remove":
            sub.add_argument("--all", action="store_true", help="remove every cached model")
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(run=run)
    parser.set_defaults(run=run)


def _cached_files(names: list[str]) -> Iterator[tuple[str, Path, FileEntry, str]]:
    """(model, path, entry, kind) for every cached file of the named (or all) models."""
    manifest = load_manifest()
    models = [get_spec(n).name for n in names] if names else sorted(manifest.models)
    for name in models:
        entry = manifest.model(name)
        if entry.source == "keras":
            for key, f in entry.files.items():
                path = cache.keras_path(f)
                if path.is_file():
                    yield name, path, f, key
        else:
            snapshot = hub_snapshot(entry)  # not the installed package: that is no cache
            if snapshot is not None:
                for f in entry.files.values():
                    if (snapshot / f.filename).exists():
                        yield name, snapshot / f.filename, f, "snapshot"
    if not names:
        asset_dir = cache.keras_dir()
        for asset in manifest.assets.values():
            if (asset_dir / asset.filename).is_file():
                yield "(asset)", asset_dir / asset.filename, asset, "asset"


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "verify": _verify, "remove": _remove}[args.action](args)


def _list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = [
        {"model": m, "kind": k, "path": str(p), "size": p.stat().st_size}
        for m, p, _, k in _cached_files(args.names)
    ]
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"the cache at {config.zoo_home()} holds no weights yet; try `zoo fetch NAME`")
    else:
        print_table(("MODEL", "KIND", "SIZE", "PATH"),
                    [(r["model"], r["kind"], cache.human_size(r["size"]), r["path"]) for r in rows])
    return 0


def _verify(args: argparse.Namespace) -> int:
    rows = [
        {"model": m, "path": str(p), "ok": cache.verify(p, f, record=False)}
        for m, p, f, _ in _cached_files(args.names)
    ]
    bad = [r for r in rows if not r["ok"]]
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{'ok ' if r['ok'] else 'BAD'}  {r['model']}  {r['path']}")
        print(f"{len(rows) - len(bad)} of {len(rows)} cached files verified")
    if bad:
        print(f"zoo: error: {len(bad)} cached file(s) fail verification; "
              "`zoo fetch` replaces them, or `zoo cache remove` deletes them",
              file=sys.stderr)
        return 1
    return 0


def _remove(args: argparse.Namespace) -> int:
    if not args.names and not args.all:
        raise InvalidInputError("name the models to remove, or pass --all")
    removed: list[str] = []
    for model, path, _, kind in list(_cached_files(args.names)):
        if kind == "snapshot":
            removed.extend(_remove_snapshot(model, path))
            continue
        for victim in (path, path.with_name(path.name + cache.RECORDED_SUFFIX)):
            if victim.exists():
                victim.unlink()
                removed.append(str(victim))
    if args.json:
        print_json(sorted(set(removed)))
    else:
        for victim_name in sorted(set(removed)):
            print(f"removed {victim_name}")
        if not removed:
            print("nothing cached to remove")
    return 0


def _remove_snapshot(model: str, path: Path) -> list[str]:
    """Delete a text model's repo folder from the Hugging Face cache."""
    hub = config.hf_cache_dir()
    repo_dir = next(p for p in path.parents if p.parent == hub)
    shutil.rmtree(repo_dir, ignore_errors=True)
    return [str(repo_dir)]
