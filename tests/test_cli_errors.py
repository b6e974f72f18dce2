"""Each mistake issue 11 found is one line on stderr, exit code 2, and names the fix.

In-process through ``factorscope.cli.main`` (the one exit point); tests/test_cli_fuzz.py
generates many more inputs against the same promise.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest

from factorscope.cli import main
from tests.conftest import TINY_FACTORS, copy_db, tiny_run_args


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in err.lower(), (word, err)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ingst"], ["No such command 'ingst'", "Did you mean 'ingest'", "factorscope --help"]),
        (["ingest", "--bogus"], ["--bogus", "factorscope ingest --help"]),
        (["sql"], ["Missing argument", "factorscope sql --help"]),
        (["learn", "-m", "abc"], ["--n-factors", "integer"]),
        (["learn", "-m", "0"], ["--n-factors", "from 1 to"]),
        (["learn", "--lambda", "nan"], ["--lambda"]),
        (["ingest", "--threads", "0"], ["--threads"]),
        (["serve", "--port", "0"], ["--port", "1 to 65,535"]),
        (["sql", "SELECT 1", "--max-rows", "0"], ["--max-rows"]),
        (["report", "--examples-per-level", "25"], ["--examples-per-level", "0 to 20"]),
        (["ingest", "--max-sentences", "0"], ["--max-sentences", "'all'"]),
        (["ingest", "--seed", "-1"], ["--seed"]),
        (["ingest", "--device", "tpu"], ["--device", "cpu, cuda, cuda:N or mps"]),
        (["ingest", "--dedupe=yes"], ["--dedupe"]),
        (["encode", "--backend", "numpy"], ["--backend", "spams"]),
        (["probe", "--min-senses", "1"], ["--min-senses", "from 2 to"]),
        (["probe", "--max-lemmas", "0"], ["--max-lemmas", "'all'"]),
        (["probe", "--min-examples", "9", "--max-examples", "5"], ["--max-examples", "at least"]),
        (["probe"], ["no database", "factorscope pipeline"]),
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *words)
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_help_and_no_arguments_exit_0(capsys):
    for argv in ([], ["--help"], ["ingest", "--help"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0 and "Usage" in out and err == "", argv
    _, out, _ = run_cli(capsys, "ingest", "--help")
    assert "--no-dedupe" in out and "--no-no-dedupe" not in out and "--overwrite" in out


def test_cuda_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli(capsys, "ingest", "--device", "cuda")
    assert_one_line_error(code, err, "no CUDA", "--device cpu")


def test_debug_keeps_tracebacks(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FACTORSCOPE_DEBUG", "1")
    with pytest.raises(Exception, match="ingst"):
        main(["ingst"])
    with pytest.raises(Exception, match="no database"):
        main(["status", "--db", str(tmp_path / "none.duckdb")])


def test_output_paths(capsys, tmp_path, tiny_pipeline_db):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, words in ((a_file, ["is a file"]), (a_file / "sub", ["is a file"])):
        code, _, err = run_cli(
            capsys, "report", "--db", tiny_pipeline_db, "--out", out, "--examples-per-level", "0"
        )
        assert_one_line_error(code, err, "--out", *words)
        code, _, err = run_cli(capsys, "export", out, "--db", tiny_pipeline_db)
        assert_one_line_error(code, err, *words)
    assert a_file.read_text() == "x"


def test_serve_checks_before_starting(capsys, tmp_path, tiny_pipeline_db):
    code, out, err = run_cli(capsys, "serve", "--db", tmp_path / "missing.duckdb")
    assert_one_line_error(code, err, "no database", "factorscope pipeline")
    assert "serving" not in out
    corrupt = tmp_path / "corrupt.duckdb"
    corrupt.write_bytes(b"not a database" * 100)
    code, out, err = run_cli(capsys, "serve", "--db", corrupt)
    assert_one_line_error(code, err, "cannot open database")
    assert "serving" not in out
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, out, err = run_cli(capsys, "serve", "--db", tiny_pipeline_db, "--port", port)
    assert_one_line_error(code, err, f"port {port}", "already in use", "--port")
    assert "serving" not in out
    code, _, err = run_cli(capsys, "serve", "--db", tiny_pipeline_db, "--host", "no.such.host.")
    assert_one_line_error(code, err, "--host")


def test_jsonl_field_of_the_wrong_type(capsys, tmp_path):
    for value, kind in (("[1, 2]", "a list"), ('{"a": 1}', "an object"), ("3", "a number")):
        corpus = tmp_path / "c.jsonl"
        corpus.write_text('{"text": "One two three four five."}\n{"text": ' + value + "}\n")
        code, _, err = run_cli(capsys, "ingest", "--corpus", corpus, "--db", tmp_path / "x.duckdb")
        assert_one_line_error(code, err, "c.jsonl:2", kind, "--field")
    corpus.write_text('{"text": null}\n{"text": null}\n')
    code, _, err = run_cli(capsys, "ingest", "--corpus", corpus, "--db", tmp_path / "x.duckdb")
    assert_one_line_error(code, err, "empty", "null")
    assert not (tmp_path / "x.duckdb").exists()


def test_model_paths(capsys, tmp_path, sentence_corpus):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    db = tmp_path / "x.duckdb"
    common = ["--corpus", sentence_corpus, "--split", "lines", "--db", db]
    code, _, err = run_cli(capsys, "ingest", *common, "--model", folder)
    assert_one_line_error(code, err, "not a Hugging Face model", "config.json")
    code, _, err = run_cli(capsys, "ingest", *common, "--model", tmp_path / "nowhere" / "model")
    assert_one_line_error(code, err, "no such folder")
    assert "Repo id" not in err
    assert not db.exists()


def test_config_typo_names_the_section(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[ingest]\nmax_sentence = 3\n")
    code, _, err = run_cli(capsys, "pipeline", "--config", config, "--db", tmp_path / "x.duckdb")
    assert_one_line_error(
        code, err, "[ingest]", "max_sentence", "max_sentences in section [corpus]"
    )
    config.write_text("[learn]\nn_factors = 0\n")
    code, _, err = run_cli(capsys, "pipeline", "--config", config, "--db", tmp_path / "x.duckdb")
    assert_one_line_error(code, err, "[learn] n_factors", "from 1 to")


def test_other_settings_are_named_and_overwrite_starts_over(
    capsys, tmp_path, tiny_pipeline_db, sentence_corpus, tiny_model_dir
):
    db = copy_db(tiny_pipeline_db, tmp_path)
    before = sha(db)
    args = tiny_run_args(sentence_corpus, tiny_model_dir)
    code, out, err = run_cli(capsys, "ingest", "--db", db, *args)
    assert code == 0 and "nothing to do" in out.lower(), (out, err)
    code, _, err = run_cli(capsys, "ingest", "--db", db, *args, "--min-words", "5")
    assert_one_line_error(code, err, "other settings", "min_words 4 -> 5", "--overwrite")
    assert sha(db) == before
    code, out, err = run_cli(capsys, "ingest", "--db", db, *args, "--min-words", "5", "--overwrite")
    assert code == 0, err
    from factorscope.stages.ingest import existing_run

    run = existing_run(db)
    assert run["config"]["corpus"]["min_words"] == 5 and run["status"] == "ingested"


def test_from_npy(capsys, tmp_path, tiny_pipeline_db):
    db = copy_db(tiny_pipeline_db, tmp_path)
    before = sha(db)
    text = tmp_path / "phi.npy"
    text.write_text("0.1 0.2 0.3\n")
    code, _, err = run_cli(capsys, "learn", "--db", db, "--from-npy", text)
    assert_one_line_error(code, err, "not a NumPy .npy file", "numpy.save")
    assert "pickle" not in err
    assert sha(db) == before
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((32, 10)).astype(np.float32)  # d x m, d = tiny hidden size
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(first, phi)
    np.save(second, phi)
    code, out, err = run_cli(capsys, "learn", "--db", db, "--from-npy", first)
    assert code == 0, err
    assert "imported dictionary" in out and "10 factors" in out and "0 vectors" not in out
    code, out, _ = run_cli(capsys, "learn", "--db", db, "--from-npy", second)  # same content
    assert code == 0 and "nothing to do" in out
    np.save(first, phi * 2 + 1)  # same path, new content: a new dictionary
    code, out, _ = run_cli(capsys, "learn", "--db", db, "--from-npy", first)
    assert code == 0 and "imported dictionary" in out
    from factorscope.warehouse import store
    from factorscope.warehouse.connection import connect

    con = connect(db, read_only=True)
    try:
        dictionaries = store.list_dictionaries(con)
    finally:
        con.close()
    imported = [d for d in dictionaries if d["source"].startswith("npy:")]
    assert len(imported) == 2
    for d in imported:
        assert d["params"]["learn_config"]["preprocessing"] == "none"
        assert "n_factors" not in d["params"]["learn_config"]
    assert (
        len(dictionaries) == 3 and dictionaries[0]["params"]["params"]["n_factors"] == TINY_FACTORS
    )


def test_home_page_hints_encode_when_no_codes(tmp_path, sentence_corpus, tiny_model_dir):
    from factorscope.dash_app import logic
    from factorscope.errors import InputError
    from factorscope.ingest.corpus import CorpusConfig
    from factorscope.stages.ingest import IngestConfig, run_ingest
    from factorscope.stages.learn import LearnConfig, run_learn

    db = tmp_path / "learned.duckdb"
    run_ingest(
        db,
        IngestConfig(
            corpus=CorpusConfig(source=str(sentence_corpus), split="lines", max_sentences=None),
            model=str(tiny_model_dir),
            chunk_size=4,
            sample_size=None,
        ),
    )
    run_learn(db, LearnConfig(n_factors=8, lambda1=0.05, seed=0))
    with pytest.raises(InputError, match="factorscope encode"):
        logic.factor_view(db, logic.default_factor(db))


def test_limits_agree_with_the_code():
    """The limits table's ceilings match the constants the code enforces."""
    from factorscope.ingest.runner import MAX_POSITIONS
    from factorscope.limits import LIMITS

    assert LIMITS["max_length"].high == MAX_POSITIONS
    assert LIMITS["examples_per_level"].high == 20
