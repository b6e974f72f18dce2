"""The installed wheel: one import package, nothing at the top level but `factorscope`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=build,
    )
    (path,) = out.glob("factorscope-*.whl")
    return path


def test_wheel_holds_only_the_factorscope_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"factorscope"}
    for expected in (
        "factorscope/ingest/corpus.py",
        "factorscope/stages/ingest.py",
        "factorscope/stages/shard_encode.py",
        "factorscope/sparse/__init__.py",
        "factorscope/warehouse/schema/001_core.sql",
        "factorscope/warehouse/summary_sql/10_top_contexts.sql",
        "factorscope/dash_app/__init__.py",
        "factorscope/cli/__init__.py",
    ):
        assert expected in names, expected
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: GPL-3.0-or-later" in text
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert (
        "factorscope = factorscope.cli:entry_point"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )


def test_installed_wheel_imports_subpackages_and_leaves_pypi_sparse_alone(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
    )
    installed = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")}
    assert installed - {"bin"} == {"factorscope"}
    script = (
        "import sys, importlib.util; sys.path.insert(0, sys.argv[1]);"
        "import factorscope.sparse, factorscope.ingest, factorscope.warehouse;"
        "import factorscope.dash_app;"
        "print(factorscope.sparse.__file__);"
        "from factorscope.warehouse.connection import migrations; print(len(migrations()));"
        "print(importlib.util.find_spec('sparse'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository root, whose folders would shadow the test
    ).stdout.split("\n")
    assert out[0].startswith(str(target / "factorscope" / "sparse"))
    assert int(out[1]) >= 1
    assert out[2] == "None"  # no bare `sparse` module was installed
