"""Fail on a function of more than 100 lines of code, its docstring aside (`make lint`).

Issue 24: a function that long holds several jobs; the limit keeps them split. Lines are
counted from ``def`` to the function's last line, minus its docstring.

    python tools/long_functions.py factorscope ingest sparse warehouse dash_app
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 100


def long_functions(roots: list[Path], limit: int = MAX_LINES) -> list[tuple[Path, str, int]]:
    found = []
    for root in roots:
        for py in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(py.read_text("utf-8"), str(py))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                first = node.body[0]
                doc = 0
                is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                if is_doc and isinstance(first.value.value, str):
                    doc = first.end_lineno - first.lineno + 1
                n = node.end_lineno - node.lineno + 1 - doc
                if n > limit:
                    found.append((py, node.name, n))
    return found


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv]
    if not roots or not all(r.is_dir() for r in roots):
        print("usage: long_functions.py DIR [DIR ...]", file=sys.stderr)
        return 2
    found = long_functions(roots)
    for py, name, n in found:
        print(f"{py}: {name} is {n} lines of code (at most {MAX_LINES})", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
