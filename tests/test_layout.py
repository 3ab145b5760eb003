"""The architecture, checked: layers import only those below them, no import cycles, no
module reaching into another's underscore names.

Every import statement counts, also those inside functions (the lazy ones that keep
`import zoo` cheap): a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Lowest first. A module may import its own layer's modules (acyclically) and any below.
LAYERS: list[tuple[str, ...]] = [
    ("zoo.errors", "zoo.config", "zoo.quiet"),
    ("zoo.hub",),
    ("zoo.model_dir", "zoo.refs", "zoo.predictions"),
    ("zoo.vision", "zoo.text"),
    ("zoo.finetuning", "zoo.loading"),
    ("zoo",),  # the package's own __init__: the public API
    ("zoo_server",),
    ("zoo.cli",),
]
# Side by side in one layer, but independent of each other.
SIBLINGS = [("zoo.vision", "zoo.text"), ("zoo.finetuning", "zoo.loading")]
PACKAGES = {"zoo": ROOT / "zoo", "zoo_server": ROOT / "server" / "zoo_server",
            "zoo_client": ROOT / "client" / "zoo_client"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imports_of(name: str, path: Path) -> set[tuple[str, str]]:
    """(imported module, imported name or "") for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add((full, "") if full in MODULES else (base, alias.name))
    return {(m, n) for m, n in found if m.split(".")[0] in PACKAGES}


def layer_of(module: str) -> tuple[int, str]:
    best: tuple[int, str] | None = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                    best is None or len(prefix) > len(best[1])):
                best = (rank, prefix)
    assert best is not None, f"{module} is in no layer; add it to LAYERS"
    return best


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _ in imports_of(module, path):
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


GRAPH = edges()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("zoo_client")))
def test_each_module_imports_only_its_layer_and_below(module: str) -> None:
    rank, prefix = layer_of(module)
    for target in GRAPH[module]:
        if target.startswith("zoo_client"):
            assert rank >= layer_of("zoo_server")[0], f"{module} imports the client {target}"
            continue
        target_rank, target_prefix = layer_of(target)
        assert target_rank <= rank, f"{module} (layer {prefix}) imports {target}, a layer above"
        for a, b in SIBLINGS:
            assert {prefix, target_prefix} != {a, b}, f"{module} imports its sibling {target}"


def test_the_client_imports_neither_the_library_nor_the_server() -> None:
    for module in (m for m in MODULES if m.startswith("zoo_client")):
        for target in GRAPH[module]:
            assert target.startswith("zoo_client"), f"{module} imports {target}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: any with two or more modules is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_imports_another_modules_underscore_names() -> None:
    private = [f"{module}: {target}.{name}" for module, path in MODULES.items()
               for target, name in imports_of(module, path)
               if name.startswith("_") and not name.startswith("__")]
    assert not private, f"underscore names imported across modules: {private}"


def test_the_layer_table_knows_every_module() -> None:
    for module in MODULES:
        if not module.startswith("zoo_client"):
            layer_of(module)
