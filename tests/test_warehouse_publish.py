"""Publishing keeps the app's labels, and readers never see a half-written file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from factorscope.warehouse import queries as q
from factorscope.warehouse.synthetic import build_synthetic_db


def test_labels_survive_a_new_encode(tmp_path):
    db = tmp_path / "p.duckdb"
    build_synthetic_db(db, n_sentences=30, n_factors=16, hidden_size=8, seed=1)
    q.set_label(db, 3, "mind words")
    q.lime_cache_put(
        db, "k", factor=3, layer=1, sentence_idx=0, word_index=0, n_samples=5, result={"a": 1}
    )
    build_synthetic_db(db, n_sentences=30, n_factors=16, hidden_size=8, seed=2)
    with q.WarehouseReader(db).connect() as con:
        assert q.factor_label(con, 3)["label"] == "mind words"
        assert q.lime_cache_get(con, "k")["result"] == {"a": 1}


def test_no_connection_is_handed_the_replaced_file(tmp_path):
    """DuckDB reuses one instance per path: a reader opened before a publish must not
    make later connections in the same process read the old file."""
    from factorscope.warehouse.connection import connect

    db = tmp_path / "p.duckdb"
    build_synthetic_db(db, n_sentences=30, n_factors=16, hidden_size=8, seed=1)
    with q.WarehouseReader(db).connect() as con:  # the app's cached reader, now open
        assert con.execute("SELECT count(*) FROM sentences").fetchone()[0] == 30
    build_synthetic_db(db, n_sentences=40, n_factors=16, hidden_size=8, seed=2)
    con = connect(db, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM sentences").fetchone()[0] == 40
    finally:
        con.close()
    with q.WarehouseReader(db).connect() as con:
        assert con.execute("SELECT count(*) FROM sentences").fetchone()[0] == 40


WRITER = textwrap.dedent(
    """
    import sys
    from factorscope.warehouse.synthetic import build_synthetic_db
    path, rounds = sys.argv[1], int(sys.argv[2])
    for seed in range(rounds):
        build_synthetic_db(path, n_sentences=40 + 10 * (seed % 3), n_factors=16,
                           hidden_size=8, seed=seed)
    """
)


def test_reads_never_fail_while_a_writer_publishes(tmp_path):
    db = tmp_path / "live.duckdb"
    build_synthetic_db(db, n_sentences=40, n_factors=16, hidden_size=8, seed=0)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), "6"])
    reader = q.WarehouseReader(db)
    reads = 0
    seen = set()
    try:
        while writer.poll() is None or reads < 5:
            with reader.connect() as con:
                info = q.run_overview(con)
                n_codes, expected = con.execute(
                    "SELECT (SELECT count(*) FROM codes), (SELECT sum(n_codes) FROM encode_chunks)"
                ).fetchall()[0]
                top = q.top_contexts(con, 1, 2, k=5)
            assert n_codes == expected  # complete: every chunk's codes are there
            assert info["dictionary_status"] == "encoded"
            assert sum(info["level_counts"].values()) > 0
            assert top.height <= 5
            seen.add(info["n_sentences"])
            reads += 1
            time.sleep(0.005)
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert len(seen) >= 2  # the reader did see new publishes land
