"""A dictionary left in the staging copy by a killed `learn` is never published unannounced.

Issue 23: after an interrupted `learn -m 128`, `learn -m 64` published dictionary 1 too
but its summary named only dictionary 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from factorscope.warehouse.publish import wip_path

from .conftest import copy_db
from .test_crash import kill_at, run_cli, scalar

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_staged_dictionary_published_by_another_learn_is_named(
    tmp_path: Path, tiny_pipeline_db: Path
) -> None:
    db = copy_db(tiny_pipeline_db, tmp_path)
    before = scalar(db, "SELECT max(dictionary_id) FROM dictionaries")
    kill_at(["learn", "--db", str(db), "-m", "12", "--seed", "3"], "learn.saved")
    staged = scalar(wip_path(db), "SELECT max(dictionary_id) FROM dictionaries")
    assert staged == before + 1
    assert scalar(db, "SELECT max(dictionary_id) FROM dictionaries") == before
    out = run_cli(["learn", "--db", str(db), "-m", "10", "--seed", "3"])
    assert f"learn: dictionary {staged + 1}," in out
    assert f"also published dictionary {staged}, fitted by an interrupted learn" in out
    assert scalar(db, "SELECT count(*) FROM dictionaries") == before + 2
