"""docs/SCHEMA.md's examples tell one dictionary's story on a file that holds two.

Issue 22: on a run with two encoded dictionaries the "Reconstruction quality per layer"
example returned both dictionaries' rows interleaved, with no ``dictionary_id`` to tell
them apart. Each ```sql block of docs/SCHEMA.md runs here on a file with dictionaries 1
and 2 encoded (dictionary 1 chosen with ``SET VARIABLE fs_dictionary = 1``) and on the
same run holding dictionary 1 alone: a result must be exactly dictionary 1's rows, or
name the dictionary of each row (a ``dictionary_id`` column).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from factorscope.stages.encode import run_encode
from factorscope.stages.encode_loop import EncodeConfig
from factorscope.stages.learn import LearnConfig, run_learn
from factorscope.warehouse.connection import connect

from .conftest import copy_db

SCHEMA_MD = Path(__file__).resolve().parents[1] / "docs" / "SCHEMA.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", SCHEMA_MD.read_text(encoding="utf-8"), re.S)


@pytest.fixture(scope="module")
def two_dictionaries(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline_db: Path) -> Path:
    db = copy_db(tiny_pipeline_db, tmp_path_factory.mktemp("two"))
    learned = run_learn(db, LearnConfig(n_factors=12, lambda1=0.05, seed=7))
    run_encode(db, EncodeConfig(dictionary_id=learned.dictionary_id))
    return db


def _rows(db: Path, sql: str, dictionary: int | None) -> tuple[list[str], list[tuple]]:
    con = connect(db, read_only=True)
    try:
        if dictionary is not None:
            con.execute(f"SET VARIABLE fs_dictionary = {int(dictionary)}")
        cur = con.execute(sql)
        names = [c[0] for c in cur.description]
        return names, sorted(cur.fetchall(), key=repr)
    finally:
        con.close()


def test_the_fixture_holds_two_encoded_dictionaries(two_dictionaries: Path) -> None:
    _, rows = _rows(
        two_dictionaries, "SELECT dictionary_id FROM dictionaries WHERE status = 'encoded'", None
    )
    assert [r[0] for r in rows] == [1, 2]
    # and the default view shows the newest encode, dictionary 2
    _, active = _rows(two_dictionaries, "SELECT dictionary_id FROM active_dictionary", None)
    assert active == [(2,)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_example_shows_one_dictionary_or_names_it(
    two_dictionaries: Path, tiny_pipeline_db: Path, index: int
) -> None:
    sql = BLOCKS[index]
    names, both = _rows(two_dictionaries, sql, 1)
    if "dictionary_id" in names or any(n.startswith("dictionary_") for n in names):
        return  # every row names its dictionary
    _, alone = _rows(tiny_pipeline_db, sql, None)
    assert len(both) == len(alone), (
        f"example {index} returns {len(both)} rows on a two-dictionary file with dictionary 1 "
        f"chosen, {len(alone)} on dictionary 1 alone, and no dictionary_id:\n{sql}"
    )
    assert both == alone, f"example {index} differs from dictionary 1's own rows:\n{sql}"
