"""Figures of Onyx's import graph: modules per folder, import layers, cycles, imports between rooms.

    python scripts/import_graph.py              # this checkout
    python scripts/import_graph.py /tmp/before  # another one (a worktree of an older commit)

Reads `serve/` and `train/` as text (nothing is imported; the generated stubs are left out).
An import layer is one step of the longest chain of imports between our modules: the deeper it
is, the more a change at the bottom can reach. A cycle is a set of modules that import each
other. "Training -> server" counts training's imports of `onyx.serve` (only the demo may).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DISTRIBUTIONS = ("serve", "train")


@dataclass
class Graph:
    files: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)


def _modules(root: Path) -> Iterator[tuple[str, Path]]:
    for dist in DISTRIBUTIONS:
        for path in sorted((root / dist).rglob("*.py")):
            parts = path.relative_to(root / dist).with_suffix("").parts
            if "proto" in parts or "build" in parts:
                continue
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _named(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
        yield node.module
        yield from (f"{node.module}.{alias.name}" for alias in node.names)


def read_graph(root: Path) -> Graph:
    """Every module of the checkout and the modules of ours it imports (packages' faces not
    counted as targets: `from onyx.x import y` counts as importing `onyx.x.y`)."""
    graph = Graph(dict(_modules(root)))
    for name, path in graph.files.items():
        targets = {t for node in ast.walk(ast.parse(path.read_text())) for t in _named(node)}
        ours = {t for t in targets if t in graph.files and t != name}
        graph.edges[name] = {t for t in ours if graph.files[t].stem != "__init__"}
    return graph


def components(graph: Graph) -> list[list[str]]:
    """Strongly connected components (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph.files:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def layers(graph: Graph, found: list[list[str]]) -> dict[str, int]:
    """Each module's depth: 1 + the deepest module it imports (a cycle counts as one module).
    Tarjan's algorithm yields components dependencies first, so one pass suffices."""
    component_of = {module: i for i, component in enumerate(found) for module in component}
    depth: list[int] = []
    for i, component in enumerate(found):
        below = {component_of[t] for m in component for t in graph.edges[m]} - {i}
        depth.append(1 + max((depth[j] for j in below), default=0))
    return {module: depth[component_of[module]] for module in graph.files}


def report(root: Path) -> str:
    graph = read_graph(root)
    found = components(graph)
    depth = layers(graph, found)
    modules = [path for path in graph.files.values() if path.stem != "__init__"]
    folders = Counter(str(path.parent.relative_to(root)) for path in modules)
    imports = sum(map(len, graph.edges.values()))
    lines = [f"{root}: {len(modules)} modules, {imports} imports"]
    lines += [f"  {folder}: {count}" for folder, count in sorted(folders.items())]

    def deepest(prefix: str) -> int:
        return max((d for m, d in depth.items() if m.startswith(prefix)), default=0)

    lines.append(
        f"import layers: {max(depth.values())} (server {deepest('onyx.serve')}, "
        f"training {deepest('onyx.train')})"
    )
    cycles = [sorted(c) for c in found if len(c) > 1]
    lines.append(f"cycles: {len(cycles)} {cycles if cycles else ''}".rstrip())
    to_server = sum(
        1
        for module, targets in graph.edges.items()
        if module.startswith("onyx.train")
        for t in targets
        if t.startswith("onyx.serve")
    )
    lines.append(f"training -> server imports: {to_server}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    if not (args.root / "serve").is_dir():
        parser.error(f"{args.root} is not an Onyx checkout (no serve/ folder)")
    print(report(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
