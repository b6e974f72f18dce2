"""`make lint` fails on an import cycle anywhere in the package (issue 24)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tools" / "import_cycles.py"

pytestmark = pytest.mark.timeout(60)


def _check(package: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), str(package)], capture_output=True, text=True, check=False
    )


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_a_cycle_held_by_an_import_inside_a_function_fails(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "room/__init__.py": "",
            "room/a.py": "from pkg.room import b\n",
            "room/b.py": "def f():\n    from pkg.room import c\n",
            "room/c.py": "from . import a\n",
            "other.py": "import pkg.room.a\n",
        },
    )
    done = _check(package)
    assert done.returncode == 1, done
    assert "import cycle among pkg.room.a, pkg.room.b, pkg.room.c" in done.stderr


def test_a_package_importing_its_submodules_is_not_a_cycle(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "from pkg import a\n",
            "a.py": "import pkg\nfrom pkg import b\n",
            "b.py": "",
        },
    )
    done = _check(package)
    assert done.returncode == 0, done.stderr


def test_the_package_has_no_import_cycle(tmp_path: Path) -> None:
    """The installed layout (as `make lint-imports` builds it): factorscope/ with the
    top-level rooms copied inside."""
    import shutil

    tree = tmp_path / "factorscope"
    shutil.copytree(ROOT / "factorscope", tree, ignore=shutil.ignore_patterns("__pycache__"))
    for room in ("ingest", "sparse", "warehouse", "dash_app"):
        shutil.copytree(ROOT / room, tree / room, ignore=shutil.ignore_patterns("__pycache__"))
    done = _check(tree)
    assert done.returncode == 0, done.stderr
