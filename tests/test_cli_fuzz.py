"""Property-based: every subcommand, given generated bad input, keeps the error promise.

For each subcommand of the typer app (listed from the app, not by hand) and each of its
parameters, hypothesis generates a bad value (out of its range in the limits table, not
a number, not one of the choices, a path of the wrong kind, a flag given a value) and
calls ``factorscope.cli.main`` in-process with otherwise valid arguments against a copy
of a real pipeline database. Generated bad corpus files (random bytes, wrong encodings,
JSONL values of the wrong type, huge lines) go through ``ingest``, and generated damaged
database files (cut short, a flipped bit, another program's, a newer schema, SQLite, a
garbage staging copy) through every subcommand. Each run must exit 2
(or 0), print exactly one line on stderr (none on success), no traceback, and leave the
database byte-for-byte unchanged. A few real subprocess runs check the entry point.

Commands never get a value that could make them start real work: ``serve`` always meets
a port that is taken, ``report`` an output path that is a file, ``merge`` a missing
shard folder, and every other command the settings of the database it is given (so a
valid value is "nothing to do").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.main import get_command

from factorscope.cli import app, main
from factorscope.ingest.corpus import CORPUS_FORMATS, SPLIT_MODES, SPLITTERS
from factorscope.limits import LIMITS
from factorscope.sparse import BACKENDS, PREPROCESSING_CHOICES
from factorscope.stages.engines import ENGINES
from factorscope.warehouse.export import FORMATS as EXPORT_FORMATS
from tests.conftest import TINY_FACTORS, copy_db

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

GROUP = get_command(app)
COMMANDS = sorted(GROUP.commands)

# Words a choice option accepts (from the registries); generated junk never equals one.
VALID_WORDS = {
    *CORPUS_FORMATS,
    *SPLIT_MODES,
    *SPLITTERS,
    *BACKENDS,
    *ENGINES,
    *PREPROCESSING_CHOICES,
    *EXPORT_FORMATS,
    "all",
}
# No digits, and no letters that spell 'all', 'nan', 'inf', 'none' or 'localhost'.
JUNK = st.text(alphabet="abcdfghjkmpqrsuvwxyz!?#%+,;=_", min_size=1, max_size=30).filter(
    lambda s: s not in VALID_WORDS
)
PATH_KINDS = ("missing", "folder", "under_a_file", "random_bytes", "text_file")
# Per path parameter, the kinds that are wrong for it (a missing --db is a new database).
BAD_PATHS = {
    "db": ("folder", "under_a_file", "random_bytes", "text_file"),
    "config": ("missing", "folder", "under_a_file", "random_bytes"),
    "from_npy": ("missing", "folder", "under_a_file", "random_bytes", "text_file"),
    "out": ("under_a_file", "text_file"),
    "out_dir": ("under_a_file", "text_file"),
    "dictionary_db": ("missing", "folder", "random_bytes"),
    "shard_dirs": ("missing", "under_a_file", "text_file"),
    "shard_dbs": ("missing", "folder", "random_bytes"),
}
LIMIT_KEYS = {"dictionary": "dictionary_id", "lambda1": "lambda1"}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_pipeline_db, sentence_corpus, tiny_model_dir):
    """A database copy, the paths of each wrong kind, a held port, and valid base arguments."""
    root = tmp_path_factory.mktemp("fuzz")
    db = copy_db(tiny_pipeline_db, root)
    (root / "folder").mkdir()
    (root / "a_file").write_text("not a folder\n")
    (root / "random.bin").write_bytes(os.urandom(4096))
    (root / "text.txt").write_text("just some text, not what was asked for\n")
    paths = {
        "missing": root / "missing" / "nothing.here",
        "folder": root / "folder",
        "under_a_file": root / "a_file" / "inside",
        "random_bytes": root / "random.bin",
        "text_file": root / "text.txt",
    }
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    config = root / "tiny.toml"
    config.write_text(
        f'[corpus]\nsource = "{sentence_corpus}"\nsplit = "lines"\nmax_sentences = "all"\n'
        f'[ingest]\nmodel = "{tiny_model_dir}"\nchunk_size = 4\nsample_size = "all"\n'
        f"[learn]\nn_factors = {TINY_FACTORS}\nlambda1 = 0.05\nseed = 0\n"
    )
    ingest_args = {
        "--corpus": str(sentence_corpus),
        "--split": "lines",
        "--max-sentences": "all",
        "--model": str(tiny_model_dir),
        "--chunk-size": "4",
        "--sample-size": "all",
    }
    base = {
        "ingest": ingest_args,
        "learn": {"-m": str(TINY_FACTORS), "--lambda": "0.05", "--seed": "0"},
        "pipeline": {"--config": str(config)},
        "report": {"--out": str(paths["text_file"])},
        "serve": {"--port": str(port)},
    }
    arguments = {
        "sql": ["SELECT 1"],
        "export": [str(paths["text_file"])],
        "merge": [str(paths["missing"])],
        "merge-ingest": [str(paths["missing"])],
    }
    yield {"root": root, "db": db, "paths": paths, "base": base, "arguments": arguments}
    held.close()


def bad_value(param) -> st.SearchStrategy:
    """A strategy of wrong values for one click parameter of our app."""
    name = param.name
    if getattr(param, "is_flag", False):
        return JUNK
    if name in BAD_PATHS:
        return st.sampled_from(BAD_PATHS[name]).map(lambda kind: ("path", kind))
    key = LIMIT_KEYS.get(name, name)
    limit = LIMITS.get(key)
    if limit is not None:
        outside = []
        if limit.low is not None:
            outside.append(st.integers(max_value=int(limit.low) - 1, min_value=-(10**20)))
        if limit.high is not None:
            outside.append(st.integers(min_value=int(limit.high) + 1, max_value=10**20))
        return st.one_of(*outside, JUNK).map(str)
    return JUNK


def argv_for(command: str, param, value, ws) -> list[str]:
    """Valid base arguments for ``command`` with ``param`` set to the bad ``value``."""
    if isinstance(value, tuple):
        value = str(ws["paths"][value[1]])
    options = {"--db": str(ws["db"]), **ws["base"].get(command, {})}
    arguments = list(ws["arguments"].get(command, []))
    if param.param_type_name == "argument":
        arguments = [value] if param.nargs == 1 else [value, str(ws["paths"]["missing"])]
        extra: list[str] = []
    elif getattr(param, "is_flag", False):
        flag = param.opts[0] if param.opts else f"--{param.name}"
        extra = [f"{flag}={value}"]
    else:
        flag = max(param.opts, key=len)
        for opt in param.opts:
            options.pop(opt, None)
        if flag == "--n-factors":
            options.pop("-m", None)
        extra = [flag, value]
    argv = [command, *arguments]
    for key, val in options.items():
        argv += [key, val]
    return argv + extra


def check_promise(code: int, err: str, argv: list[str]) -> None:
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    else:
        assert not any(line.startswith("error") for line in lines), (argv, err)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_keeps_the_error_promise(command, workspace, capsys, monkeypatch):
    monkeypatch.chdir(workspace["root"])
    params = [p for p in GROUP.commands[command].params if p.name != "help"]
    assert params, command
    db = workspace["db"]
    before = sha(db)

    @settings(
        max_examples=6 * len(params),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,
    )
    @given(data=st.data())
    def run(data):
        param = data.draw(st.sampled_from(params), label="parameter")
        value = data.draw(bad_value(param), label=param.name)
        argv = argv_for(command, param, value, workspace)
        code = main(argv)
        _, err = capsys.readouterr()
        check_promise(code, err, argv)
        assert sha(db) == before, argv
        assert not (db.parent / (db.name + ".wip")).exists(), argv

    run()


# Commands whose base arguments fail before they open --db (an --out that is a file, a
# missing shard folder): they keep the promise, but name no damage.
FAIL_BEFORE_THE_DB = {"export", "report", "merge", "merge-ingest"}
# Damage found when a file is opened, whatever the command reads: every command that
# opens --db refuses it. A flipped bit or a missing block (a file cut short) is found
# where that block is read (status reads every block; a writer verifies its staging
# copy), and a damaged staging copy by the commands that use one; elsewhere exit 0 is
# allowed (nothing damaged was read, nothing written).
FOUND_ON_OPEN = {"foreign", "future", "sqlite"}
DAMAGE_ARGUMENTS = {"compare": ["1", "2"]}  # valid numbers; the file has one dictionary


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_refuses_a_damaged_database(command, workspace, capsys, monkeypatch):
    """Generated damaged files (tests/test_damaged_files.py: cut short at a generated
    byte, a generated bit flipped in a data block, another program's DuckDB file, a newer
    schema, a SQLite file, a garbage staging copy) given to every subcommand with its
    otherwise valid arguments: exit 2 and one line (or exit 0 where nothing damaged was
    read), no traceback, and every file byte-identical."""
    from tests.test_damaged_files import KINDS, WORDS, damage

    monkeypatch.chdir(workspace["root"])
    counter = iter(range(10**6))

    @settings(
        max_examples=2,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,
    )
    @given(where=st.floats(min_value=0.02, max_value=0.98), bit=st.integers(0, 7))
    def run(where, bit):
        for kind in KINDS:
            folder = workspace["root"] / f"damaged-{command}-{next(counter)}"
            folder.mkdir()
            db = copy_db(workspace["db"], folder)
            changed = damage(db, kind, where=where, bit=bit)
            before = {p.name: sha(p) for p in folder.iterdir()}
            options = {"--db": str(db), **workspace["base"].get(command, {})}
            arguments = DAMAGE_ARGUMENTS.get(command, workspace["arguments"].get(command, []))
            argv = [command, *arguments]
            for key, val in options.items():
                argv += [key, val]
            code = main(argv)
            _, err = capsys.readouterr()
            check_promise(code, err, argv)
            must_refuse = command == "status" or (
                kind in FOUND_ON_OPEN and command not in FAIL_BEFORE_THE_DB
            )
            if must_refuse:
                assert code == 2, (kind, argv, err)
                for word in (changed.name, *WORDS[kind]):
                    assert word.lower() in err.lower(), (kind, word, argv, err)
            after = {p.name: sha(p) for p in folder.iterdir() if p.name in before}
            assert after == before, (kind, argv)
            made = {p.name for p in folder.iterdir()} - set(before)
            assert made <= {db.name + ".writer.lock", db.name + ".lock"}, (kind, argv, made)
            shutil.rmtree(folder)

    run()


def _bad_corpus(kind: str, data) -> tuple[str, bytes]:
    words = data.draw(
        st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=8), min_size=5, max_size=9)
    )
    sentence = " ".join(words) + "."
    if kind == "random_bytes":
        blob = data.draw(st.binary(min_size=1, max_size=2000))
        return ".txt", b"\x00" + blob  # NUL: never valid text
    if kind == "latin1":
        return ".txt", ("caf\u00e9 " + sentence + "\n").encode("latin-1")
    if kind == "utf16":
        return ".txt", (sentence + "\n").encode("utf-16")
    if kind == "jsonl_type":
        value = data.draw(
            st.one_of(
                st.integers(),
                st.floats(allow_nan=False),
                st.booleans(),
                st.lists(st.integers(), max_size=3),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            )
        )
        import json

        rows = [json.dumps({"text": sentence}), json.dumps({"text": value})]
        return ".jsonl", ("\n".join(rows) + "\n").encode()
    if kind == "jsonl_broken":
        return ".jsonl", b'{"text": "' + sentence.encode() + b'"\n'
    if kind == "huge_line":
        n = data.draw(st.integers(min_value=50, max_value=200_000))
        return ".txt", (" ".join(["word"] * n)).encode()
    if kind == "huge_word":
        return ".txt", b"x" * data.draw(st.integers(min_value=100_000, max_value=2_000_000))
    if kind == "csv_binary":
        return ".csv", b"text\n\xff\xfe\x00\x01\n"
    return ".parquet", data.draw(st.binary(min_size=0, max_size=500))


CORPUS_KINDS = (
    "random_bytes",
    "latin1",
    "utf16",
    "jsonl_type",
    "jsonl_broken",
    "huge_line",
    "huge_word",
    "csv_binary",
    "parquet_junk",
)


def test_bad_corpus_files_keep_the_error_promise(workspace, tiny_model_dir, capsys, tmp_path):
    """Generated bad corpora: one line, exit 2, and no database left behind."""
    counter = iter(range(10**6))

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,
    )
    @given(data=st.data())
    def run(data):
        kind = data.draw(st.sampled_from(CORPUS_KINDS), label="kind")
        suffix, content = _bad_corpus(kind, data)
        corpus = tmp_path / f"corpus{next(counter)}{suffix}"
        corpus.write_bytes(content)
        db = tmp_path / "fresh.duckdb"
        argv = ["ingest", "--db", str(db), "--corpus", str(corpus), "--split", "lines"]
        argv += ["--model", str(tiny_model_dir)]
        code = main(argv)
        _, err = capsys.readouterr()
        assert code == 2, (kind, err)
        check_promise(code, err, argv)
        assert not db.exists() and not (tmp_path / "fresh.duckdb.wip").exists(), kind

    run()


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        ([], 0),
        (["ingst"], 2),
        (["learn", "-m", "0"], 2),
        (["ingest", "--bogus"], 2),
        (["sql"], 2),
        (["serve", "--db", "missing.duckdb"], 2),
    ],
)
def test_entry_point_in_a_subprocess(argv, code, tmp_path):
    """The installed script: same exit codes, one line on stderr, no traceback."""
    script = Path(sys.executable).with_name("factorscope")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "factorscope.cli"]
    done = subprocess.run(command + argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    if code == 2:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    else:
        assert "Usage" in done.stdout
    assert list(tmp_path.iterdir()) == []
