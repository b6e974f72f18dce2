"""`factorscope explain`: a readable rule for every factor at every layer, scored on
held-out sentences, for a dictionary and each of its encoded controls.

Tokens are tagged once per run (part of speech, lemma, WordNet class: ingest/tagging.py)
into ``token_tags``. Sentences are split by a hash of their id into training and
held-out parts; the rules are fitted on the first and scored on the second
(evidence/explain.py). Each (dictionary, layer) is committed whole in ``<db>.wip`` with
its settings: a killed run resumes at the first layer not written, and a run with other
settings explains again. The copy is published when every layer is done.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError
from factorscope.evidence.explain import (
    Activity,
    Explanation,
    RuleSettings,
    Score,
    fit_rules,
    score_rules,
    test_split,
)
from factorscope.evidence.features import FeatureSpace, TokenTable, build_features
from factorscope.progress import progress_bar
from factorscope.stages.sharding import run_shard
from factorscope.warehouse import explanations as ew
from factorscope.warehouse import queries, store
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import check_db_path_writable, newest_copy, staged_database


@dataclass(frozen=True)
class ExplainConfig:
    """Which dictionary to explain (None: the default one) and how."""

    dictionary_id: int | None = None
    controls: bool = True
    """Explain the dictionary's encoded controls too (their scores are the baseline)."""
    force: bool = False
    """Explain again the layers already explained with these settings."""
    rules: RuleSettings = field(default_factory=RuleSettings)

    def settings(self) -> dict:
        return self.rules.to_dict()


@dataclass(frozen=True)
class ExplainSummary:
    dictionary_id: int
    explained: dict[int, tuple[int, int]]
    """Per dictionary explained: (factor-layers with a rule, factor-layers in all)."""
    layers_done: int
    layers_reused: int
    seconds: float
    tagged: int
    skipped_controls: tuple[int, ...] = ()

    def line(self) -> str:
        if self.layers_done == 0:
            return (
                f"explain: dictionary {self.dictionary_id} and its controls are explained "
                "with these settings; nothing to do"
            )
        parts = []
        for did, (ok, total) in self.explained.items():
            who = "dictionary" if did == self.dictionary_id else "control"
            parts.append(f"{who} {did}: {ok:,} of {total:,} factor-layers have a rule")
        line = f"explain: {'; '.join(parts)} ({self.layers_done} layers in {self.seconds:.1f} s"
        if self.layers_reused:
            line += f", {self.layers_reused} already done"
        line += ")"
        if self.skipped_controls:
            ids = ", ".join(map(str, self.skipped_controls))
            line += f"; control {ids} not encoded yet (run `factorscope encode --dictionary N`)"
        return line


@dataclass
class _Corpus:
    """The run's tokens as features, split once for every dictionary and layer."""

    token_ids: np.ndarray
    features_train: FeatureSpace
    features_test: FeatureSpace
    row_of: np.ndarray  # token row -> row in its split
    is_test: np.ndarray
    test_sentence: np.ndarray
    sentence_length: np.ndarray


def run_explain(db_path, config: ExplainConfig) -> ExplainSummary:
    """Explain a dictionary and its controls; resumable per (dictionary, layer)."""
    check_db_path_writable(db_path)
    started = time.perf_counter()
    settings = config.settings()
    # Everything checked on a read-only connection first: a bad file or a bad choice is
    # refused before a staging copy exists.
    con = connect(newest_copy(db_path), read_only=True)
    try:
        run = store.require_run(con)
        target = _check_target(con, run, db_path, config.dictionary_id)
    finally:
        con.close()
    with staged_database(db_path) as con:
        targets = ew.explain_targets(con, target)
        chosen = targets if config.controls else targets[:1]
        skipped = tuple(d["dictionary_id"] for d in chosen if d["status"] != "encoded")
        chosen = [d for d in chosen if d["status"] == "encoded"]
        n_layers = int(run["n_layers"])
        done = {
            d["dictionary_id"]: set()
            if config.force
            else ew.finished_layers(con, d["dictionary_id"], settings)
            for d in chosen
        }
        todo = [
            (d, layer)
            for d in chosen
            for layer in range(n_layers)
            if layer not in done[d["dictionary_id"]]
        ]
        reused = len(chosen) * n_layers - len(todo)
        tagged = _ensure_tags(con)
        explained: dict[int, tuple[int, int]] = {}
        if todo:
            corpus = _read_corpus(con, config.rules)
            with progress_bar("explain", total=len(todo), unit="layers") as bar:
                task = bar.task_ids[0]
                for d, layer in todo:
                    t0 = time.perf_counter()
                    expl, scores = _explain_layer(con, corpus, d, layer, config.rules)
                    ew.write_explained_layer(
                        con,
                        d["dictionary_id"],
                        layer,
                        _explanation_columns(expl),
                        _score_columns(scores),
                        settings,
                        time.perf_counter() - t0,
                    )
                    crashpoint("explain.layer")
                    ok, total = explained.get(d["dictionary_id"], (0, 0))
                    explained[d["dictionary_id"]] = (
                        ok + sum(e.explained for e in expl),
                        total + len(expl),
                    )
                    bar.update(task, advance=1, rate=1 / max(time.perf_counter() - t0, 1e-9))
    return ExplainSummary(
        target,
        explained,
        len(todo),
        reused,
        time.perf_counter() - started,
        tagged,
        skipped,
    )


def _check_target(con, run: dict, db_path, dictionary_id: int | None) -> int:
    """The dictionary to explain, refused with one line unless it can be explained."""
    if run_shard(run) is not None:
        raise InputError(f"{db_path} holds one shard of a run: explain the merged run")
    target = queries.active_dictionary_id(con) if dictionary_id is None else dictionary_id
    targets = ew.explain_targets(con, target)
    if not targets or targets[0]["dictionary_id"] != target:
        raise InputError(f"dictionary {target} does not exist in {db_path}")
    if targets[0]["status"] != "encoded":
        raise InputError(
            f"dictionary {target} is not encoded: run `factorscope encode --dictionary "
            f"{target}` first"
        )
    if targets[0]["kind"] == "control":
        raise InputError(
            f"dictionary {target} is a control: explain its parent "
            f"{targets[0]['parent_id']}, which explains its controls too"
        )
    return target


def _ensure_tags(con) -> int:
    """Tag the run's tokens unless every token has its tags; the number tagged."""
    from factorscope.ingest.tagging import load_tagger, tag_tokens, tagger_info
    from factorscope.warehouse import tags

    if ew.has_token_tags(con):
        return 0
    nlp = load_tagger()
    data = tags.read_tokens_for_tagging(con)
    with progress_bar("tag tokens", total=len(data["texts"]), unit="sentences") as bar:
        task = bar.task_ids[0]

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        tagged = tag_tokens(**data, nlp=nlp, progress=report)
    tags.write_token_tags(con, tagged, tagger_info(nlp))
    return len(tagged["token_id"])


def _read_corpus(con, rules: RuleSettings) -> _Corpus:
    tok = ew.read_explain_tokens(con)
    sent = ew.read_explain_sentences(con)
    n_sentences = int(sent["sentence_idx"].max()) + 1 if len(sent["sentence_idx"]) else 0
    sentence_test = np.zeros(n_sentences, dtype=bool)
    sentence_test[sent["sentence_idx"]] = test_split(
        [str(s) for s in sent["sentence_id"]], rules.test_share
    )
    sentence_length = np.ones(n_sentences, dtype=np.float64)
    sentence_length[sent["sentence_idx"]] = np.maximum(sent["n_tokens"], 1)
    table = TokenTable(
        sentence=tok["sentence_idx"].astype(np.int64),
        word_index=tok["word_index"].astype(np.int64),
        piece=tok["piece"].astype(object),
        word=tok["word"].astype(object),
        tag=tok["tag"].astype(object),
        pos=tok["pos"].astype(object),
        lemma=tok["lemma"].astype(object),
        lexname=tok["lexname"].astype(object),
    )
    is_test = sentence_test[table.sentence]
    features = build_features(table, ~is_test, min_count=rules.min_feature_count)
    train_rows = np.nonzero(~is_test)[0]
    test_rows = np.nonzero(is_test)[0]
    row_of = np.empty(len(table), dtype=np.int64)
    row_of[train_rows] = np.arange(len(train_rows))
    row_of[test_rows] = np.arange(len(test_rows))
    return _Corpus(
        token_ids=tok["token_id"].astype(np.int64),
        features_train=FeatureSpace(features.names, features.matrix[train_rows].tocsc()),
        features_test=FeatureSpace(features.names, features.matrix[test_rows].tocsc()),
        row_of=row_of,
        is_test=is_test,
        test_sentence=table.sentence[test_rows],
        sentence_length=sentence_length,
    )


def _explain_layer(
    con, corpus: _Corpus, dictionary: dict, layer: int, rules: RuleSettings
) -> tuple[list[Explanation], list[Score]]:
    codes = ew.read_layer_codes(con, dictionary["dictionary_id"], layer)
    rows = np.searchsorted(corpus.token_ids, codes["token_id"])
    rows = np.clip(rows, 0, len(corpus.token_ids) - 1)
    known = corpus.token_ids[rows] == codes["token_id"]
    rows = rows[known]
    factor = codes["factor"][known].astype(np.int64)
    alpha = codes["alpha"][known].astype(np.float64)
    test = corpus.is_test[rows]
    m = int(dictionary["n_factors"])
    train = Activity(
        corpus.row_of[rows[~test]],
        factor[~test],
        alpha[~test],
        corpus.features_train.matrix.shape[0],
        m,
        rules.fit_from_quantile,
    )
    expl = fit_rules(corpus.features_train, train, rules)
    held_out = Activity(
        corpus.row_of[rows[test]],
        factor[test],
        alpha[test],
        corpus.features_test.matrix.shape[0],
        m,
    )
    scores = score_rules(
        expl, corpus.features_test, held_out, corpus.test_sentence, corpus.sentence_length
    )
    return expl, scores


def _explanation_columns(expl: list[Explanation]) -> dict[str, list]:
    import json

    return {
        "factor": [e.factor for e in expl],
        "explained": [e.explained for e in expl],
        "text": [e.text for e in expl],
        "rule": [
            json.dumps([{"feature": f, "value": v} for f, v in e.terms]) if e.terms else None
            for e in expl
        ],
        "rule_kind": [e.rule_kind for e in expl],
        "n_terms": [len(e.terms) for e in expl],
        "n_active_train": [e.n_active_train for e in expl],
        "train_detection": [e.train_detection for e in expl],
    }


def _score_columns(scores: list[Score]) -> dict[str, list]:
    return (
        {name: [getattr(s, name) for s in scores] for name in asdict(scores[0])} if scores else {}
    )
