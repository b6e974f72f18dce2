"""Corpus readers on real files of every supported format."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from factorscope.errors import InputError
from factorscope.ingest.corpus import CorpusConfig, read_corpus, sentence_id, split_sentences


def texts(config: CorpusConfig) -> list[str]:
    return [s.text for s in read_corpus(config)]


def test_lines_paragraphs_and_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text(
        "The cat  sat on\tthe mat. Then it slept all day.\n\nA second paragraph is here now.\n",
        encoding="utf-8",
    )
    assert texts(CorpusConfig(source=str(path), min_words=2)) == [
        "The cat sat on the mat.",
        "Then it slept all day.",
        "A second paragraph is here now.",
    ]
    lines = texts(CorpusConfig(source=str(path), split="lines", min_words=2))
    assert lines == [
        "The cat sat on the mat. Then it slept all day.",
        "A second paragraph is here now.",
    ]


def test_split_sentences_keeps_inner_punctuation() -> None:
    assert split_sentences("Is it 3.14? Yes! It is pi.") == ["Is it 3.14?", "Yes!", "It is pi."]


def test_dedupe_and_word_filters(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("one two three four\none two three four\ntoo short\n" + "w " * 60, "utf-8")
    kept = texts(CorpusConfig(source=str(path), split="lines", min_words=3, max_words=10))
    assert kept == ["one two three four"]
    both = texts(CorpusConfig(source=str(path), split="lines", min_words=3, dedupe=False))
    assert both == ["one two three four", "one two three four"]


def test_jsonl_csv_parquet_and_folder(tmp_path: Path) -> None:
    rows = [f"Sentence number {i} is right here." for i in range(5)]
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps({"body": r, "id": i}) for i, r in enumerate(rows)), "utf-8"
    )
    pl.DataFrame({"body": rows}).write_csv(tmp_path / "b.csv")
    pl.DataFrame({"body": rows}).write_parquet(tmp_path / "c.parquet")
    for name in ("a.jsonl", "b.csv", "c.parquet"):
        assert texts(CorpusConfig(source=str(tmp_path / name), field="body")) == rows
    folder = texts(CorpusConfig(source=str(tmp_path), field="body", dedupe=False))
    assert folder == rows * 3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.jsonl", '{"text": "x y z w"}\n', "no field 'body'"),
        ("b.csv", "text\nhello there my friend\n", "no column 'body'"),
        ("c.jsonl", "{not json\n", "not valid JSON"),
    ],
)
def test_missing_field_and_malformed(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, "utf-8")
    with pytest.raises(InputError, match=message):
        read_corpus(CorpusConfig(source=str(path), field="body"))


def test_binary_non_utf8_empty_and_missing(tmp_path: Path) -> None:
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"hello world\x00\x01\x02")
    with pytest.raises(
        InputError, match=r"bin.txt is a binary file \(NUL byte at byte offset 11\)"
    ):
        read_corpus(CorpusConfig(source=str(binary)))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9 is nice".encode("latin-1"))
    with pytest.raises(InputError, match=r"not UTF-8 text .*byte offset 3"):
        read_corpus(CorpusConfig(source=str(latin)))
    empty = tmp_path / "empty.txt"
    empty.write_text("", "utf-8")
    with pytest.raises(InputError, match="is empty"):
        read_corpus(CorpusConfig(source=str(empty)))
    with pytest.raises(InputError, match="not found"):
        read_corpus(CorpusConfig(source=str(tmp_path / "missing.txt")))


def test_cap_sampling_is_seeded_and_ids_are_stable(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("\n".join(f"this is sentence number {i}" for i in range(100)), "utf-8")
    a = read_corpus(CorpusConfig(source=str(path), split="lines", max_sentences=10, seed=1))
    b = read_corpus(CorpusConfig(source=str(path), split="lines", max_sentences=10, seed=1))
    c = read_corpus(CorpusConfig(source=str(path), split="lines", max_sentences=10, seed=2))
    assert [s.text for s in a] == [s.text for s in b] != [s.text for s in c]
    assert len(a) == 10
    assert a[0].sentence_id == sentence_id(str(path), a[0].text)
    assert len({s.sentence_id for s in a}) == 10


def test_builtin_fortunes_skips_ascii_art() -> None:
    sentences = read_corpus(CorpusConfig(source="fortunes", max_sentences=None))
    assert len(sentences) > 10_000
    assert not any(s.source.endswith(("ascii-art", "/art")) for s in sentences)


def test_builtin_shakespeare() -> None:
    sentences = read_corpus(CorpusConfig(source="shakespeare", max_sentences=50))
    assert len(sentences) == 50
    assert all(s.source.startswith("shakespeare/") for s in sentences)
    assert not any("**" in s.text or s.text.startswith("#") for s in sentences)


def test_config_round_trip() -> None:
    config = CorpusConfig(source="x.txt", max_sentences=None, min_words=2)
    assert CorpusConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="max_words"):
        CorpusConfig(min_words=10, max_words=5)


def test_builtin_corpora_joined_with_plus() -> None:
    """The large config reads several built-ins as one corpus; wordnet keeps its senses."""
    joined = read_corpus(CorpusConfig(source="shakespeare+wordnet", max_sentences=None))
    alone = {
        name: read_corpus(CorpusConfig(source=name, max_sentences=None))
        for name in ("shakespeare", "wordnet")
    }
    assert len(joined) == sum(len(v) for v in alone.values())
    assert [s.text for s in joined] == [s.text for v in alone.values() for s in v]
    wordnet = [s for s in joined if s.metadata is not None]
    assert len(wordnet) == len(alone["wordnet"])
    for bad, message in (
        ("fortunes+nope", "not found"),
        ("wordnet+wordnet", "twice"),
    ):
        with pytest.raises(InputError, match=message):
            read_corpus(CorpusConfig(source=bad))
