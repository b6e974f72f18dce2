"""One TOML file for a whole pipeline (``make ingest CONFIG=...``).

Sections ``[corpus]``, ``[ingest]``, ``[learn]`` and ``[encode]`` take the fields of
:class:`CorpusConfig`, :class:`IngestConfig`, :class:`LearnConfig` and
:class:`EncodeConfig`; unknown keys are errors, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from factorscope.encode import EncodeConfig
from factorscope.errors import InputError
from factorscope.ingest.corpus import CorpusConfig
from factorscope.ingest.pipeline import IngestConfig
from factorscope.learn import LearnConfig


@dataclass(frozen=True)
class PipelineConfig:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    learn: LearnConfig = field(default_factory=LearnConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)


def _build(cls, section: str, values: dict, **extra):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(
            f"unknown key(s) in [{section}]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    try:
        return cls(**values, **extra)
    except TypeError as e:
        raise InputError(f"bad [{section}] settings: {e}") from e


def load_pipeline_config(path: str | Path | None, *, corpus: str | None = None) -> PipelineConfig:
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config file {path} not found")
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is not valid TOML: {e}") from e
    unknown = sorted(set(data) - {"corpus", "ingest", "learn", "encode"})
    if unknown:
        raise InputError(f"unknown section(s) in config: {', '.join(unknown)}")
    corpus_values = dict(data.get("corpus", {}))
    if corpus is not None:
        corpus_values["source"] = corpus
    ingest_values = {k: (None if v == "all" else v) for k, v in data.get("ingest", {}).items()}
    corpus_values = {k: (None if v == "all" else v) for k, v in corpus_values.items()}
    learn_values = {k: (None if v == "all" else v) for k, v in data.get("learn", {}).items()}
    return PipelineConfig(
        ingest=_build(
            IngestConfig,
            "ingest",
            ingest_values,
            corpus=_build(CorpusConfig, "corpus", corpus_values),
        ),
        learn=_build(LearnConfig, "learn", learn_values),
        encode=_build(EncodeConfig, "encode", data.get("encode", {})),
    )
