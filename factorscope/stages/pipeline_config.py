"""One TOML file for a whole pipeline (``make ingest CONFIG=...``).

Sections ``[corpus]``, ``[ingest]``, ``[learn]``, ``[encode]`` and ``[evidence]`` take
the fields of :class:`CorpusConfig`, :class:`IngestConfig`, :class:`LearnConfig`,
:class:`EncodeConfig` and :class:`EvidenceConfig`; unknown keys are errors, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from factorscope.errors import InputError
from factorscope.ingest.corpus import CorpusConfig
from factorscope.limits import check_setting
from factorscope.stages.encode import EncodeConfig
from factorscope.stages.ingest import IngestConfig
from factorscope.stages.learn import CONTROL_KINDS, LearnConfig


@dataclass(frozen=True)
class EvidenceConfig:
    """``[evidence]``: controls made and encoded beside the learned dictionary, and
    whether ``explain`` runs after them (issue 20: every number beside its control)."""

    controls: tuple[str, ...] = ()
    explain: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.controls, str) or not all(isinstance(c, str) for c in self.controls):
            raise InputError('[evidence] controls must be a list of names, e.g. ["gaussian"]')
        bad = [c for c in self.controls if c not in CONTROL_KINDS]
        if bad:
            raise InputError(
                f"[evidence] controls: unknown {', '.join(map(repr, bad))} "
                f"(known: {', '.join(CONTROL_KINDS)})"
            )
        if not isinstance(self.explain, bool):
            raise InputError("[evidence] explain must be true or false")
        object.__setattr__(self, "controls", tuple(self.controls))


@dataclass(frozen=True)
class PipelineConfig:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    learn: LearnConfig = field(default_factory=LearnConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)


_SECTIONS = {
    "corpus": CorpusConfig,
    "ingest": IngestConfig,
    "learn": LearnConfig,
    "encode": EncodeConfig,
    "evidence": EvidenceConfig,
}


def _hint(key: str, section: str, known: set[str]) -> str:
    """``key`` with where it belongs: a close key of this section, or another section."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    for name, cls in _SECTIONS.items():
        if name == section:
            continue
        others = {f.name for f in dataclasses.fields(cls)} - {"corpus"}
        match = difflib.get_close_matches(key, sorted(others), n=1, cutoff=0.75)
        if match and (not close or match[0] == key):
            return f"{key} (did you mean {match[0]} in section [{name}]?)"
    return f"{key} (did you mean {close[0]}?)" if close else key


def _build(cls, section: str, values: dict, **extra):
    known = {f.name for f in dataclasses.fields(cls)} - set(extra)
    unknown = sorted(set(values) - known)
    if unknown:
        hints = [_hint(key, section, known) for key in unknown]
        raise InputError(
            f"unknown key(s) in [{section}]: {', '.join(hints)} (known: {', '.join(sorted(known))})"
        )
    checked = {
        key: check_setting(key, value, f"[{section}] {key}") for key, value in values.items()
    }
    try:
        return cls(**checked, **extra)
    except TypeError as e:
        raise InputError(f"bad [{section}] settings: {e}") from e


def describe(config: PipelineConfig) -> str:
    """A few words on what a pipeline config will run (corpus, size, factors)."""
    corpus = config.ingest.corpus
    sentences = "all" if corpus.max_sentences is None else f"{corpus.max_sentences:,}"
    return (
        f"corpus {corpus.source}, {sentences} sentences, model "
        f"{config.ingest.model or 'minilm-l6'}, {config.learn.n_factors:,} factors"
    )


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
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise InputError(
            f"unknown section(s) in config {path}: {', '.join(unknown)} "
            f"(known: {', '.join(_SECTIONS)})"
        )
    for name in _SECTIONS:
        if not isinstance(data.get(name, {}), dict):
            raise InputError(f"config {path}: {name} must be a section [{name}], not a value")
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
        evidence=_build(EvidenceConfig, "evidence", data.get("evidence", {})),
    )
