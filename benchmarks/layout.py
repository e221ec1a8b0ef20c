"""The shape of the `clinrisk` package: modules and lines per folder, import cycles, the longest import chain.

    .venv/bin/python benchmarks/layout.py [PACKAGE_DIR]

Prints one JSON object. The import graph is grimp's (import-linter's graph library): it counts
every import statement, including those inside functions and behind `TYPE_CHECKING`. Modules in an
import cycle are merged into one node before the longest chain is measured (in a graph without a
cycle, which is what the layers keep, the merge changes nothing). PACKAGE_DIR (default: this
repository's `clinrisk`) lets the same measure run on another checkout: its parent goes first on
sys.path.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import grimp

PACKAGE = "clinrisk"


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively (the graph is small, but recursion depth is not ours to pick)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start) & modules)))]
        index[start] = low[start] = counter
        counter += 1
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
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def longest_chain(graph: grimp.ImportGraph, modules: set[str]) -> list[str]:
    components = strongly_connected(graph, modules)
    component_of = {module: i for i, component in enumerate(components) for module in component}
    edges: dict[int, set[int]] = {i: set() for i in range(len(components))}
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if component_of[imported] != component_of[module]:
                edges[component_of[module]].add(component_of[imported])

    @cache
    def chain_from(node: int) -> tuple[int, ...]:
        best = max((chain_from(child) for child in edges[node]), key=len, default=())
        return (node, *best)

    longest = max((chain_from(node) for node in edges), key=len)
    return [" + ".join(sorted(components[node])) for node in longest]


def main(argv: list[str]) -> int:
    package_dir = Path(argv[0]).resolve() if argv else Path(__file__).resolve().parents[1] / PACKAGE
    sys.path.insert(0, str(package_dir.parent))
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    modules = {m for m in graph.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")}
    files = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    per_folder: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    for path in files:
        folder = path.parent.relative_to(package_dir.parent).as_posix()
        per_folder[folder] += 1
        lines[folder] += len(path.read_text().splitlines())
    cycles = [sorted(c) for c in strongly_connected(graph, modules) if len(c) > 1]
    chain = longest_chain(graph, modules)
    print(
        json.dumps(
            {
                "package_dir": str(package_dir),
                "modules": len(files),
                "lines": sum(lines.values()),
                "largest_folder_modules": max(per_folder.values()),
                "folders": {folder: {"modules": per_folder[folder], "lines": lines[folder]} for folder in per_folder},
                "cycles": cycles,
                "longest_chain_modules": len(chain),
                "longest_chain": chain,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
