"""The CLI takes its choices from the registries and its defaults from the config dataclasses.

Nothing here is listed by hand twice: the options are read from the typer app, the
choices from the registries the code dispatches on, the defaults from the dataclasses.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import numpy as np
import pytest
from typer.main import get_command

from factorscope.cli import app, main
from factorscope.dash_app.config import AppConfig
from factorscope.ingest.corpus import (
    _SUFFIX_FORMATS,
    CORPUS_FORMATS,
    CORPUS_READERS,
    SPLIT_MODES,
    SPLITTERS,
    CorpusConfig,
)
from factorscope.limits import LIMITS, MAX_POSITIONS, TOP_K, sentence_of, token_id
from factorscope.sparse import BACKENDS, PREPROCESSING_CHOICES
from factorscope.stages.encode import EncodeConfig
from factorscope.stages.engines import ENGINES, ShardFolderRequest
from factorscope.stages.ingest import IngestConfig
from factorscope.stages.learn import LearnConfig
from factorscope.stages.probe import ProbeSettings
from factorscope.warehouse.export import FORMATS, VIEW_SETS

GROUP = get_command(app)

# (command, option name) -> the registry its choices come from
CHOICES = {
    ("ingest", "format"): CORPUS_FORMATS,
    ("ingest", "split"): SPLIT_MODES,
    ("ingest", "splitter"): SPLITTERS,
    ("learn", "preprocessing"): PREPROCESSING_CHOICES,
    ("encode", "backend"): BACKENDS,
    ("encode", "engine"): ENGINES,
    ("export", "format"): FORMATS,
    ("export", "views"): tuple(VIEW_SETS),
}

# command -> the dataclasses whose fields its options set (option name -> field name)
CONFIGS = {
    "ingest": ((CorpusConfig, {"corpus": "source"}), (IngestConfig, {})),
    "learn": ((LearnConfig, {}),),
    "encode": ((EncodeConfig, {"dictionary": "dictionary_id"}), (ShardFolderRequest, {})),
    "serve": ((AppConfig, {"lime_samples": "lime_default_samples"}),),
    "probe": ((ProbeSettings, {}),),
}


def _param(command: str, name: str):
    (param,) = [p for p in GROUP.commands[command].params if p.name == name]
    return param


def _field_defaults(cls: type) -> dict:
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING and not f.name.startswith("_")
    }


@pytest.mark.parametrize(("command", "name"), sorted(CHOICES))
def test_choices_are_the_registry(command, name):
    param = _param(command, name)
    assert list(param.type_descriptor.choices) == list(CHOICES[command, name])
    assert param.default in CHOICES[command, name]


@pytest.mark.parametrize(("command", "name"), sorted(CHOICES))
def test_a_wrong_choice_lists_exactly_the_registry(capsys, tmp_path, monkeypatch, command, name):
    monkeypatch.chdir(tmp_path)
    flag = _param(command, name).opts[0]
    argv = [command, *(["out"] if command == "export" else []), flag, "nope"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err, err
    names = err.split("is not one of", 1)[1].split(". See", 1)[0]
    listed = re.findall(r"'([^']*)'", names)
    assert listed == list(CHOICES[command, name])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("command", "name"), sorted(CHOICES))
def test_help_lists_the_registry(capsys, monkeypatch, command, name):
    monkeypatch.setenv("COLUMNS", "400")  # one option a line, so the choices are not wrapped
    assert main([command, "--help"]) == 0
    assert "|".join(CHOICES[command, name]) in capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_cli_defaults_are_the_dataclass_defaults(command):
    params = {p.name: p for p in GROUP.commands[command].params}
    checked = 0
    for cls, renamed in CONFIGS[command]:
        for field, default in _field_defaults(cls).items():
            option = {v: k for k, v in renamed.items()}.get(field, field)
            if option not in params:
                continue
            given = params[option].default
            limit = LIMITS.get(field) or LIMITS.get(option)
            if isinstance(given, str) and limit is not None:
                given = limit.check(given, option)  # 'all' -> None, '2000' -> 2000
            assert given == default, f"{command} --{option}: {given!r} != {cls.__name__}.{field}"
            checked += 1
    assert checked >= 1


def test_every_suffix_has_a_reader():
    assert set(_SUFFIX_FORMATS.values()) <= set(CORPUS_READERS)
    assert ("auto", *CORPUS_READERS) == CORPUS_FORMATS


def test_token_id_rule_is_one_function():
    idx, pos = np.array([0, 3, 7]), np.array([0, 5, MAX_POSITIONS - 1])
    ids = token_id(idx, pos)
    assert (sentence_of(ids) == idx).all() and (ids % MAX_POSITIONS == pos).all()
    assert token_id(1, 2) == MAX_POSITIONS + 2
    assert LIMITS["max_length"].high == MAX_POSITIONS
    assert LIMITS["partial_k"].low == TOP_K == ShardFolderRequest.partial_k


def test_remaining_copies_agree():
    """Copies in modules being reshaped elsewhere (see the registries commit) must agree."""
    from factorscope.stages.shard_encode import DEFAULT_PARTIAL_K
    from factorscope.warehouse import store
    from factorscope.warehouse.queries import LEVELS
    from factorscope.warehouse.summaries import refresh_summaries

    assert DEFAULT_PARTIAL_K == TOP_K
    assert store.TOKEN_ID_STRIDE == MAX_POSITIONS
    assert LEVELS == ("low", "mid", "high")
    assert inspect.signature(refresh_summaries).parameters["top_k"].default == TOP_K
