"""Model runner and ingest pipeline, with real models and real DuckDB files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from factorscope.cli import main
from factorscope.ingest.corpus import CorpusConfig
from factorscope.ingest.model import load_model
from factorscope.ingest.runner import hidden_states, tokenize
from factorscope.stages.ingest import IngestConfig, run_ingest
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import wip_path

from .conftest import SENTENCES


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_rows(db: Path, sql: str) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.runcompare
def test_packaged_minilm_shapes_and_word_alignment() -> None:
    """The real default model: every layer kept, pieces aligned with the tokenizer's offsets."""
    loaded = load_model()
    assert (loaded.n_layers, loaded.hidden_size) == (7, 384)
    texts = ["Unbelievably, the ex-president left Washington yesterday.", "He left."]
    tokenized = tokenize(loaded, texts)
    states = hidden_states(loaded, tokenized, batch_size=2)
    for text, ts, st in zip(texts, tokenized, states, strict=True):
        encoding = loaded.tokenizer(text, return_offsets_mapping=True)
        assert st.shape == (7, len(ts.positions), 384)
        assert np.isfinite(st).all()
        # special tokens are not kept as contexts
        assert ts.pieces[0] == "[CLS]" and 0 not in ts.positions
        for p in ts.positions:
            start, end = encoding["offset_mapping"][p]
            assert (ts.char_start[p], ts.char_end[p]) == (start, end)
            piece = ts.pieces[p].removeprefix("##")
            assert text[start:end].lower() == piece
            word = ts.word_at(p)
            assert text[start:end] in word and " " not in word
    # A multi-piece word: every piece knows the whole word.
    first = tokenized[0]
    words = [first.word_at(p) for p in first.positions]
    assert words.count("Unbelievably") == sum(
        1 for p in first.positions if first.word_index[p] == 0
    )
    # Hidden states of the same sentence do not depend on its batch neighbours.
    alone = hidden_states(loaded, tokenize(loaded, ["He left."]), batch_size=1)[0]
    np.testing.assert_allclose(alone, states[1], atol=1e-4)


def tiny_config(model_dir: Path, corpus: Path, **overrides) -> IngestConfig:
    base = {
        "corpus": CorpusConfig(source=str(corpus), split="lines", max_sentences=None),
        "model": str(model_dir),
        "chunk_size": 4,
        "sample_size": 100,
        "batch_size": 3,
    }
    base.update(overrides)
    return IngestConfig(**base)


def test_ingest_rows_sample_and_idempotence(
    tmp_path: Path, tiny_model_dir: Path, sentence_corpus: Path
) -> None:
    db = tmp_path / "run.duckdb"
    summary = run_ingest(db, tiny_config(tiny_model_dir, sentence_corpus))
    assert summary.n_sentences == len(SENTENCES)
    assert not wip_path(db).exists()
    n_tokens = table_rows(db, "SELECT count(*) FROM tokens")[0][0]
    assert n_tokens == summary.n_tokens > len(SENTENCES) * 5
    # exactly the requested sample, spread over all 3 layers, no duplicates
    sample = table_rows(db, "SELECT layer, token_id FROM hidden_states")
    assert len(sample) == len(set(sample)) == 100
    assert {layer for layer, _ in sample} == {0, 1, 2}
    assert table_rows(db, "SELECT DISTINCT len(vector) FROM hidden_states") == [(32,)]
    # token ids encode (sentence, position) and words cover their pieces
    bad = table_rows(
        db,
        "SELECT count(*) FROM tokens JOIN sentences USING (sentence_idx) "
        "WHERE token_id <> sentence_idx * 1024 + position "
        "OR substr(text, word_start + 1, word_end - word_start) <> word "
        "OR char_start < word_start OR char_end > word_end",
    )
    assert bad == [(0,)]
    status = table_rows(db, "SELECT status, n_chunks FROM runs")
    assert status == [("ingested", 3)]
    digest = file_digest(db)
    again = run_ingest(db, tiny_config(tiny_model_dir, sentence_corpus))
    assert again.already_complete and file_digest(db) == digest


def test_sample_all_keeps_every_vector(
    tmp_path: Path, tiny_model_dir: Path, sentence_corpus: Path
) -> None:
    db = tmp_path / "all.duckdb"
    summary = run_ingest(db, tiny_config(tiny_model_dir, sentence_corpus, sample_size=None))
    assert table_rows(db, "SELECT count(*) FROM hidden_states")[0][0] == summary.n_tokens * 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--corpus", "{missing}"], "not found"),
        (["--corpus", "{binary}"], "binary file (NUL byte at byte offset 4)"),
        (["--corpus", "{latin}"], "not UTF-8 text (invalid byte at byte offset 3)"),
        (["--corpus", "{empty}"], "is empty"),
        (["--corpus", "{jsonl}", "--field", "body"], "no field 'body'"),
        (["--model", "no-such-org/no-such-model"], "cannot load model 'no-such-org/no-such-model'"),
        (["--max-sentences", "lots"], "--max-sentences must be a whole number"),
    ],
)
def test_bad_input_one_line_exit_2_database_unchanged(
    tmp_path: Path,
    tiny_model_dir: Path,
    sentence_corpus: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    files = {
        "missing": tmp_path / "missing.txt",
        "binary": tmp_path / "bin.txt",
        "latin": tmp_path / "latin.txt",
        "empty": tmp_path / "empty.txt",
        "jsonl": tmp_path / "c.jsonl",
    }
    files["binary"].write_bytes(b"abcd\x00efg")
    files["latin"].write_bytes("caf\u00e9 ole".encode("latin-1"))
    files["empty"].write_text("", "utf-8")
    files["jsonl"].write_text('{"text": "a b c d e"}\n', "utf-8")
    args = [a.format(**files) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_model_dir)]
    if "--corpus" not in args:
        args += ["--corpus", str(sentence_corpus), "--split", "lines"]

    fresh = tmp_path / "fresh.duckdb"
    assert main(["ingest", "--db", str(fresh), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not fresh.exists() and not wip_path(fresh).exists()


def test_existing_database_is_untouched_by_a_conflicting_ingest(
    tmp_path: Path, tiny_model_dir: Path, sentence_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "kept.duckdb"
    run_ingest(db, tiny_config(tiny_model_dir, sentence_corpus))
    digest = file_digest(db)
    code = main(["ingest", "--db", str(db), "--model", str(tiny_model_dir), "--corpus", "fortunes"])
    assert code == 2
    assert "already holds a run" in capsys.readouterr().err
    assert file_digest(db) == digest and not wip_path(db).exists()


def test_unwritable_database_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "--db", "/no/such/folder/x.duckdb"]) == 2
    assert "folder /no/such/folder does not exist" in capsys.readouterr().err


def test_status_reports_progress(
    tmp_path: Path, tiny_model_dir: Path, sentence_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.duckdb"
    run_ingest(db, tiny_config(tiny_model_dir, sentence_corpus))
    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "3/3 chunks" in out and f"{len(SENTENCES)} sentences" in out
