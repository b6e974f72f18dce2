"""Sentence metadata: the built-in `wordnet` corpus, `--metadata-fields` / `--label-field`,
and the ``sentences.metadata`` column through every path that writes sentences: a single
ingest, a resumed one (killed mid-run), sharded ingest + merge-ingest, and shard encodes +
merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from factorscope.cli import main
from factorscope.errors import InputError
from factorscope.ingest import wordnet
from factorscope.ingest.corpus import CorpusConfig, read_corpus
from factorscope.stages.ingest import IngestConfig, run_ingest
from factorscope.stages.sharding import ShardSpec
from factorscope.warehouse.connection import connect

CLI = Path(sys.executable).with_name("factorscope")

# Two synsets in WordNet's data format (the second has an example without its words).
DATA_VERB = (
    "  1 This software and database is being provided ...\n"
    '02009433 38 v 02 leave 0 go_forth 0 000 | go away from a place; "At what time does the '
    'train leave?"; "She left the room"; "The fugitive has left the country"\n'
)
DATA_ADJ = (
    "02032954 00 a 01 left(a) 0 000 | being or located on the left side; "
    '"my left hand"; "the other side of the road"\n'
)


@pytest.fixture
def tiny_wordnet(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "wordnet"
    root.mkdir()
    (root / "data.verb").write_text(DATA_VERB, "latin-1")
    (root / "data.adj").write_text(DATA_ADJ, "latin-1")
    (root / "data.noun").write_text("", "latin-1")
    (root / "data.adv").write_text("", "latin-1")
    (root / "verb.exc").write_text("left leave\n", "latin-1")
    monkeypatch.setattr(wordnet, "WORDNET_DIR", root)
    return root


def test_wordnet_examples_keep_their_sense(tiny_wordnet):
    examples = list(wordnet.examples(tiny_wordnet))
    assert [(e.text, e.lemma, e.word) for e in examples] == [
        ("At what time does the train leave?", "leave", "leave"),
        ("She left the room", "leave", "left"),  # verb.exc: left -> leave
        ("The fugitive has left the country", "leave", "left"),
        ("my left hand", "left", "left"),  # the adjective marker (a) is not part of the word
    ]  # "the other side of the road" uses no word of its synset: dropped
    she = examples[1]
    assert she.text[she.start : she.end] == "left"
    assert she.metadata() == {
        "lemma": "leave",
        "word": "left",
        "synset": "02009433v",
        "pos": "v",
        "lexname": "verb.motion",
        "gloss": "go away from a place",
    }
    assert examples[3].metadata()["lexname"] == "adj.all"
    # regular suffixes, as WordNet's morphy
    exc = {}
    assert "object" in wordnet.base_forms("objects", "n", exc)
    assert "make" in wordnet.base_forms("making", "v", exc)
    assert "tall" in wordnet.base_forms("taller", "a", exc)


def test_wordnet_builtin_corpus(tiny_wordnet):
    sentences = read_corpus(CorpusConfig(source="wordnet", min_words=1))
    assert [s.text for s in sentences] == [
        "At what time does the train leave?",
        "She left the room",
        "The fugitive has left the country",
        "my left hand",
    ]
    assert sentences[1].source == "wordnet/02009433v"
    assert sentences[1].metadata["word"] == "left"
    with pytest.raises(InputError, match="--metadata-fields is for"):
        read_corpus(CorpusConfig(source="fortunes", metadata_fields=("x",)))


def test_missing_wordnet_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(wordnet, "WORDNET_DIR", tmp_path / "none")
    with pytest.raises(InputError, match="apt-get install wordnet-base"):
        read_corpus(CorpusConfig(source="wordnet"))


@pytest.mark.skipif(not (wordnet.WORDNET_DIR / "data.noun").is_file(), reason="no wordnet-base")
def test_real_wordnet_has_tens_of_thousands_of_labelled_sentences():
    sentences = read_corpus(CorpusConfig(source="wordnet", min_words=1, max_sentences=None))
    assert len(sentences) > 40_000
    assert all(
        set(s.metadata) == {"lemma", "word", "synset", "pos", "lexname", "gloss"}
        for s in sentences[:1000]
    )
    assert {s.metadata["pos"] for s in sentences} == {"n", "v", "a", "r"}


def _labelled_rows(n: int = 12) -> list[dict]:
    return [
        {"text": f"Sentence number {i} says left or right.", "w": "left", "s": f"s{i % 3}", "n": i}
        for i in range(n)
    ]


def test_metadata_fields_from_jsonl_csv_and_parquet(tmp_path):
    rows = _labelled_rows(4)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    pl.DataFrame(rows).write_csv(tmp_path / "c.csv")
    pl.DataFrame(rows).write_parquet(tmp_path / "c.parquet")
    for name, n in (("c.jsonl", 0), ("c.csv", "0"), ("c.parquet", 0)):
        config = CorpusConfig(source=str(tmp_path / name), metadata_fields=("w", "s", "n"))
        sentences = read_corpus(config)
        assert [s.metadata["s"] for s in sentences] == ["s0", "s1", "s2", "s0"]
        assert sentences[0].metadata == {"w": "left", "s": "s0", "n": n}
    assert read_corpus(CorpusConfig(source=str(jsonl)))[0].metadata is None
    with pytest.raises(InputError, match="no metadata field 'x'"):
        read_corpus(CorpusConfig(source=str(jsonl), metadata_fields=("x",)))
    with pytest.raises(InputError, match="no metadata column 'x'"):
        read_corpus(CorpusConfig(source=str(tmp_path / "c.csv"), metadata_fields="x"))
    (tmp_path / "t.txt").write_text("a plain text file here\n")
    with pytest.raises(InputError, match="text file"):
        read_corpus(CorpusConfig(source=str(tmp_path / "t.txt"), metadata_fields=("x",)))


def test_metadata_fields_keep_old_config_hashes():
    plain = CorpusConfig()
    assert "metadata_fields" not in plain.to_dict()  # runs made before it keep their hash
    assert IngestConfig(corpus=plain).config_hash() == IngestConfig().config_hash()
    labelled = CorpusConfig(metadata_fields="w, s")
    assert labelled.metadata_fields == ("w", "s")
    assert CorpusConfig.from_dict(labelled.to_dict()) == labelled
    assert IngestConfig(corpus=labelled).config_hash() != IngestConfig().config_hash()


# ----------------------------------------------------------------------------- every path


def _metadata(db: Path) -> dict[str, dict | None]:
    con = connect(db, read_only=True)
    try:
        rows = con.execute("SELECT sentence_id, metadata FROM sentences").fetchall()
    finally:
        con.close()
    return {sid: (json.loads(m) if m is not None else None) for sid, m in rows}


@pytest.fixture(scope="module")
def labelled_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labelled") / "labelled.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _labelled_rows()) + "\n")
    return path


def _config(corpus: Path, model: Path) -> IngestConfig:
    return IngestConfig(
        corpus=CorpusConfig(
            source=str(corpus), max_sentences=None, metadata_fields=("w", "s", "n")
        ),
        model=str(model),
        chunk_size=3,
        sample_size=None,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_metadata_survives_single_resumed_sharded_and_merged_runs(
    labelled_corpus, tiny_model_dir, tmp_path
):
    from factorscope.stages.encode import run_encode
    from factorscope.stages.learn import LearnConfig, run_learn
    from factorscope.stages.merge import run_merge
    from factorscope.stages.merge_ingest import run_merge_ingest
    from factorscope.stages.shard_encode import run_shard_encode

    config = _config(labelled_corpus, tiny_model_dir)
    single = tmp_path / "single.duckdb"
    run_ingest(single, config)
    expected = _metadata(single)
    assert len(expected) == 12
    assert sorted(m["n"] for m in expected.values()) == list(range(12))

    # the CLI, killed after its second chunk, then resumed
    resumed = tmp_path / "resumed.duckdb"
    argv = [
        str(CLI), "ingest", "--db", str(resumed), "--corpus", str(labelled_corpus),
        "--model", str(tiny_model_dir), "--chunk-size", "3", "--sample-size", "all",
        "--max-sentences", "all", "--metadata-fields", "w,s", "--label-field", "n",
    ]  # fmt: skip
    env = {**os.environ, "FACTORSCOPE_CRASH_AT": "ingest.chunk:2", "FACTORSCOPE_PROGRESS": "0"}
    killed = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    env.pop("FACTORSCOPE_CRASH_AT")
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _metadata(resumed) == expected

    # sharded ingest, merge-ingest
    shard_dbs = []
    for i in range(2):
        db = tmp_path / f"shard-{i}.duckdb"
        run_ingest(db, config, shard=ShardSpec(i, 2))
        shard_dbs.append(db)
    run_db = tmp_path / "run.duckdb"
    run_merge_ingest(run_db, shard_dbs)
    assert _metadata(run_db) == expected

    # learn, shard encodes, merge (its sentences come from the shards' Parquet files)
    run_learn(run_db, LearnConfig(n_factors=16, lambda1=0.05, seed=0))
    dirs = []
    for i, db in enumerate(shard_dbs):
        out = tmp_path / f"enc-{i}"
        run_shard_encode(db, out, shard=ShardSpec(i, 2), dictionary_db=run_db)
        dirs.append(out)
    merged = tmp_path / "merged.duckdb"
    run_merge(merged, dirs)
    assert _metadata(merged) == expected

    # a local encode keeps them (the staging copy carries the column)
    run_encode(run_db)
    assert _metadata(run_db) == expected
    assert main(["sql", "--db", str(run_db), "SELECT metadata->>'s' AS s FROM sentences"]) == 0
