"""Fail on any import cycle between the modules of one package (`make lint`).

import-linter keeps the layers pointing one way; it does not see a cycle *inside* a room
(issue 24: warehouse's connection -> summaries -> store -> summaries, held together by
imports inside functions). This check reads every module's imports with ``ast`` --
function-level imports included, since those are how a cycle hides -- and reports each
strongly connected group of two or more modules. A package importing its own submodules
from ``__init__`` (and a module importing its parent package) is not a cycle here.

    python tools/import_cycles.py build/lint-imports/factorscope
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_graph(package_dir: Path) -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports."""
    modules: dict[str, Path] = {}
    for py in sorted(package_dir.rglob("*.py")):
        parts = list(py.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = py
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, py in modules.items():
        package = name if py.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(py.read_text("utf-8"), str(py))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: import_cycles.py PACKAGE_DIR", file=sys.stderr)
        return 2
    graph = module_graph(Path(argv[0]))
    found = cycles(graph)
    for group in found:
        loop = " -> ".join(f"{a} -> {b}" for a in group for b in sorted(graph[a] & set(group)))
        print(f"import cycle among {', '.join(group)} ({loop})", file=sys.stderr)
    if found:
        return 1
    print(f"import cycles: none among {len(graph)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
