"""What a factor does: ablation, output effects, steering (`factorscope effects`).

Real forward passes, real SPAMS, real DuckDB. The Done-when test plants a factor: a tiny
BERT *with an MLM head* is ingested, a learned dictionary gets one atom replaced by a
known direction v (the last layer's state of "bank", preprocessed), so that factor 0 *is*
v; the head is then built so that what v writes into the head's input raises the logit
of one unused vocabulary token by 6 on average at the factor's tokens. Removing the
factor must lower that token's logit by those 6, rank it first among the promoted
tokens (through the model and directly through the head), move the output distribution
(KL), and the random-direction control must stay near zero. The sentence-embedding path runs on the
tiny BertModel (and the pooling is checked on the packaged MiniLM); a kill at
``effects.chunk`` lands mid-stage and resumes to an uninterrupted run's tables; steering
changes the codes of the layers above the steered one and no others.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from factorscope.cli import main
from factorscope.errors import InputError, ModelLoadError
from factorscope.stages.effects import (
    EffectModel,
    EffectsConfig,
    EffectSettings,
    effect_for_page,
    run_effects,
)
from factorscope.warehouse import effects as ew
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import wip_path
from tests.conftest import SENTENCES, copy_db
from tests.contract import assert_tables_match

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CLI = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]
LAST = 2  # the tiny models have 2 blocks: layers 0..2
TARGET_PIECE = "[unused7]"  # a vocabulary entry no sentence of the corpus contains
PLANTED = 0  # the factor replaced by the known direction


def _rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _frame(db: Path, sql: str) -> pl.DataFrame:
    con = connect(db, read_only=True)
    try:
        return pl.from_arrow(con.sql(sql).to_arrow_table())
    finally:
        con.close()


# ----------------------------------------------------------------------------- the MLM run


def _write_tiny_mlm(out: Path) -> Path:
    """A 2-layer, 64-dim random BertForMaskedLM (seed 0) with the packaged tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from factorscope.ingest.model import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _plant_direction(db: Path) -> tuple[int, np.ndarray, float]:
    """Dictionary 2 := dictionary 1 with atom PLANTED replaced by the preprocessed
    last-layer state of "bank" in the first sentence; encoded. Returns (its id, the atom
    in the model's space at the last layer, alpha = 1), i.e. phi / scale[LAST]."""
    from factorscope.stages.encode import run_encode
    from factorscope.stages.encode_loop import EncodeConfig
    from factorscope.stages.learn import load_learner
    from factorscope.warehouse import store
    from factorscope.warehouse.publish import staged_database

    ((token_id,),) = _rows(
        db, "SELECT token_id FROM tokens WHERE sentence_idx = 0 AND word = 'bank' LIMIT 1"
    )
    con = connect(db, read_only=True)
    try:
        record = store.load_dictionary(con, 1)
        (vector,) = con.execute(
            "SELECT vector FROM hidden_states WHERE layer = ? AND token_id = ?",
            [LAST, token_id],
        ).fetchall()[0]
    finally:
        con.close()
    learner = load_learner(record)
    pre = learner.preprocessor_
    x_pre = pre.transform(np.asarray([vector], dtype=np.float32), layers=[LAST])[0]
    v = x_pre / np.linalg.norm(x_pre)
    components = record.components.copy()
    components[PLANTED] = v
    with staged_database(db) as con:
        planted = store.save_dictionary(
            con,
            components=components,
            lambda1=record.lambda1,
            preprocessing=record.preprocessing,
            params=record.params,
            seed=0,
            fit_seconds=0.0,
            source="test:planted",
        )
    run_encode(db, EncodeConfig(dictionary_id=planted))
    scale = float(pre.scale_[list(pre.layers_).index(LAST)])
    return planted, (v / scale).astype(np.float32), scale


def _active_tokens(db: Path, dictionary_id: int) -> list[tuple[int, int, float]]:
    """(sentence_idx, position, alpha) where the planted factor is active at LAST."""
    return [
        (int(t) // 1024, int(t) % 1024, float(a))
        for t, a in _rows(
            db,
            "SELECT token_id, alpha FROM codes WHERE dictionary_id = ? AND factor = ? "
            "AND layer = ? ORDER BY token_id",
            [dictionary_id, PLANTED, LAST],
        )
    ]


def _build_head(model_dir: Path, active, atom: np.ndarray) -> tuple[int, float, float]:
    """Make the head read the planted direction: token ``TARGET_PIECE``'s output row :=
    gamma x (the mean change the removal of alpha * atom makes to the head's input, at
    the factor's tokens), its bias set so it is a plausible but not a dominant
    prediction there. Saved over the model. Returns (token id, the expected effect: the
    mean drop of its logit, 6 by construction, computed by the head itself; the same for
    the stage's control, a random direction of the same norm seeded by (0, factor,
    layer))."""
    import torch
    from transformers import AutoTokenizer, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    target = int(tokenizer.convert_tokens_to_ids(TARGET_PIECE))
    model = BertForMaskedLM.from_pretrained(str(model_dir)).eval()
    states, alphas = [], []
    with torch.no_grad():
        for idx in sorted({s for s, _, _ in active}):
            enc = tokenizer(SENTENCES[idx], return_tensors="pt")
            last = model(**enc, output_hidden_states=True).hidden_states[-1][0]
            for s, position, alpha in active:
                if s == idx:
                    states.append(last[position])
                    alphas.append(alpha)
        x = torch.stack(states)
        a = torch.tensor(alphas)[:, None]
        ablated = x - a * torch.from_numpy(atom)[None, :]
        transform = model.cls.predictions.transform
        g = (transform(x) - transform(ablated)).mean(0)
        gamma = 6.0 / float(g.norm() ** 2)  # the mean logit of the target drops by 6
        embeddings = model.get_input_embeddings().weight
        decoder = model.cls.predictions.decoder
        embeddings[target] = gamma * g  # tied with the decoder's row
        logits = model.cls(x)
        others = logits.clone()
        others[:, target] = -torch.inf
        want = others.max(1).values - 2.0  # two nats below the best other token
        bias = (want - (logits[:, target] - decoder.bias[target])).mean()
        decoder.bias[target] = bias
        model.cls.predictions.bias[target] = bias
        clean = model.cls(x)[:, target]
        expected = float((clean - model.cls(ablated)[:, target]).mean())
        u = np.random.default_rng([0, PLANTED, LAST]).standard_normal(atom.shape[0])
        u = torch.from_numpy((u / np.linalg.norm(u)).astype(np.float32))
        control = x - a * float(np.linalg.norm(atom)) * u[None, :]
        control_expected = float((clean - model.cls(control)[:, target]).mean())
    model.save_pretrained(str(model_dir))
    return target, expected, control_expected


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory: pytest.TempPathFactory, sentence_corpus: Path) -> dict:
    from factorscope.ingest.corpus import CorpusConfig
    from factorscope.stages.encode import run_encode
    from factorscope.stages.ingest import IngestConfig, run_ingest
    from factorscope.stages.learn import LearnConfig, run_learn

    folder = tmp_path_factory.mktemp("mlm")
    model_dir = _write_tiny_mlm(folder / "model")
    db = folder / "run.duckdb"
    run_ingest(
        db,
        IngestConfig(
            corpus=CorpusConfig(source=str(sentence_corpus), split="lines", max_sentences=None),
            model=str(model_dir),
            chunk_size=4,
            sample_size=None,
        ),
    )
    run_learn(db, LearnConfig(n_factors=16, lambda1=0.05, seed=0))
    run_encode(db)
    planted, atom, _scale = _plant_direction(db)
    active = _active_tokens(db, planted)
    target, expected, control = _build_head(model_dir, active, atom)
    return {
        "db": db,
        "dictionary": planted,
        "target": target,
        "expected": expected,
        "control": control,
        "active": active,
    }


def test_a_planted_direction_is_found_through_the_head_and_the_control_is_near_zero(
    mlm_run: dict, tmp_path: Path
) -> None:
    db = copy_db(mlm_run["db"], tmp_path)
    assert len(mlm_run["active"]) >= 1
    model = EffectModel.from_db(db, dictionary_id=mlm_run["dictionary"])
    assert model.output_kind == "masked-lm" and model.intervener.head is not None
    effect = effect_for_page(db, model, PLANTED, LAST, EffectSettings(n_contexts=16))
    assert effect["cached"] is False and effect["source"] == "on-demand"
    assert effect["output_kind"] == "masked-lm"
    assert effect["n_tokens"] == len(mlm_run["active"])

    target, expected = mlm_run["target"], mlm_run["expected"]
    # the construction: the target's logit drops by 6 when the factor goes, and by next
    # to nothing when a random direction of the same norm goes
    assert expected == pytest.approx(6.0, abs=1e-3)
    assert abs(mlm_run["control"]) < 0.25 * expected, mlm_run
    for kind in ("ablation", "direct"):
        promoted = effect["output_tokens"][kind]["promoted"]
        assert promoted[0]["token_id"] == target, (kind, promoted[:3])
        assert promoted[0]["token"] == TARGET_PIECE
        # the size the head itself computes, and far above the next token
        assert promoted[0]["effect"] == pytest.approx(expected, abs=1e-3), kind
        assert promoted[1]["effect"] < 0.2 * promoted[0]["effect"], promoted[:3]
        assert all(t["token_id"] != target for t in effect["output_tokens"][kind]["suppressed"])

    ablation, control = effect["ablation"], effect["control"]
    assert ablation["output_kl"] > 0.05
    assert control["output_kl"] < 0.1 * ablation["output_kl"], (ablation, control)
    # an edit at the last layer is the last layer's change: both remove the same norm
    assert ablation["state_change"] == pytest.approx(effect["edit_rel"], rel=1e-3)
    assert control["state_change"] == pytest.approx(effect["edit_rel"], rel=1e-3)

    # stored where the page reads it, and read back without measuring again
    again = effect_for_page(db, model, PLANTED, LAST, EffectSettings(n_contexts=16))
    assert again["cached"] is True
    assert again["output_tokens"]["ablation"]["promoted"][0]["token_id"] == target
    assert again["ablation"]["output_kl"] == pytest.approx(ablation["output_kl"])


def test_the_stage_on_a_head_model_stores_output_tokens_and_steering_predicts(
    mlm_run: dict, tmp_path: Path
) -> None:
    db = copy_db(mlm_run["db"], tmp_path)
    summary = run_effects(db, EffectsConfig(dictionary_id=mlm_run["dictionary"]))
    assert summary.output_kind == "masked-lm" and summary.measured >= 1
    assert "masked-LM head" in summary.line()
    kinds = _rows(
        db,
        "SELECT DISTINCT output_kind, output_kl IS NOT NULL FROM factor_effects "
        "WHERE dictionary_id = ?",
        [mlm_run["dictionary"]],
    )
    assert kinds == [("masked-lm", True)]
    per_factor = _rows(
        db,
        "SELECT factor, count(*) FROM factor_output_tokens WHERE dictionary_id = ? "
        "AND kind = 'ablation' GROUP BY factor",
        [mlm_run["dictionary"]],
    )
    assert per_factor and all(n == 2 * EffectSettings().top_tokens for _, n in per_factor)

    model = EffectModel.from_db(db, dictionary_id=mlm_run["dictionary"])
    result = model.steer(SENTENCES[0], PLANTED, LAST, -1.0)
    assert result.predictions is not None and len(result.predictions) == len(result.tokens)
    moved = [p for p in result.predictions if p.before != p.after]
    assert moved
    assert result.to_dict()["predictions"][0]["before"]


# ----------------------------------------------------------------------------- sentence embedding


def test_the_stage_on_a_sentence_embedding_model(tiny_pipeline_db: Path, tmp_path: Path) -> None:
    db = copy_db(tiny_pipeline_db, tmp_path)
    summary = run_effects(db, EffectsConfig(chunk_factors=16))
    n_firing = _rows(db, "SELECT count(*) FROM factor_levels")[0][0]
    assert summary.n_factors == summary.measured == n_firing
    assert summary.output_kind == "sentence-embedding"
    assert "no language-model head" in summary.line()
    rows = _rows(
        db,
        "SELECT e.output_kind, e.source, e.output_kl IS NULL, e.n_sentences, e.n_tokens, "
        "e.embedding_shift, e.control_embedding_shift, e.state_change FROM factor_effects e "
        "JOIN factor_levels v ON v.factor = e.factor AND v.peak_layer = e.layer",
    )
    assert len(rows) == n_firing
    for kind, source, no_kl, n_sentences, n_tokens, shift, control, change in rows:
        assert (kind, source, no_kl) == ("sentence-embedding", "stage", True)
        assert 1 <= n_sentences <= 16 and n_tokens >= n_sentences
        assert shift > 0 and control > 0 and change > 0
    assert _rows(db, "SELECT count(*) FROM factor_output_tokens")[0][0] == 0
    # every sentence used, the one moved most first
    sentences = _rows(
        db,
        "SELECT factor, layer, rank, embedding_shift FROM factor_effect_sentences "
        "ORDER BY factor, layer, rank",
    )
    assert len(sentences) == sum(r[3] for r in rows)
    for (f, layer, _, shift), (f2, layer2, _, shift2) in itertools.pairwise(sentences):
        if (f, layer) == (f2, layer2):
            assert shift >= shift2

    # a second run has nothing to do and writes nothing
    before = db.read_bytes()
    again = run_effects(db, EffectsConfig(chunk_factors=16))
    assert again.measured == 0 and "nothing to do" in again.line()
    assert db.read_bytes() == before

    # the readers of the app and the report
    con = connect(db, read_only=True)
    try:
        d = int(con.execute("SELECT dictionary_id FROM active_dictionary").fetchall()[0][0])
        (factor, peak), *_ = con.execute(
            "SELECT factor, peak_layer FROM factor_levels ORDER BY factor"
        ).fetchall()
        stored = ew.factor_effect(con, d, factor, peak)
        by_level = ew.effects_by_level(con, d)
        neighbours = ew.neighbor_effects(con, d, factor)
        layers = ew.effect_layers(con, d, factor)
    finally:
        con.close()
    assert stored is not None and stored["source"] == "stage" and stored["sentences"]
    assert stored["sentences"][0]["text"] in SENTENCES
    assert by_level["n_factors"].sum() == n_firing
    assert set(by_level["measure"]) == {"embedding_shift"}
    assert neighbours.height >= 1 and layers["layer"].to_list() == [peak]

    # on demand at another layer: measured once, then read; the stage's row is the same
    # measurement as an on-demand one at the peak
    model = EffectModel.from_db(db)
    other = (peak + 1) % (LAST + 1)
    first = effect_for_page(db, model, factor, other)
    assert first["cached"] is False and first["layer"] == other
    assert effect_for_page(db, model, factor, other)["cached"] is True
    fresh = effect_for_page(db, model, factor, peak, store_result=False)
    assert fresh["cached"] is True  # the stage's row, same settings
    con = connect(db, read_only=True)
    try:
        from factorscope.stages.effects import measure_factor

        remeasured = measure_factor(con, model, factor, peak).to_dict()
    finally:
        con.close()
    for name in ew.MEASURES[:4]:
        for side in ("ablation", "control"):
            assert remeasured[side][name] == pytest.approx(stored[side][name], rel=1e-4, abs=1e-6)


def test_minilm_pools_like_sentence_transformers() -> None:
    """The packaged MiniLM has no head; its pooled embedding is the attention-masked mean
    of the last layer (sentence-transformers' Pooling(mean), special tokens included)."""
    import torch

    from factorscope.ingest.intervene import Intervener
    from factorscope.ingest.model import load_model
    from factorscope.ingest.runner import tokenize

    loaded = load_model(None)
    intervener = Intervener.from_loaded(loaded)
    assert intervener.output_kind == "sentence-embedding" and intervener.head is None
    assert intervener.can_resume
    (ts,) = tokenize(loaded, [SENTENCES[0]])
    (result,) = intervener.run([ts])
    with torch.no_grad():
        enc = loaded.tokenizer(SENTENCES[0], return_tensors="pt")
        last = loaded.model(**enc).last_hidden_state[0]
    assert np.allclose(result.pooled, last.mean(0).numpy(), atol=1e-5)
    assert np.allclose(result.states[6], last[ts.positions].numpy(), atol=1e-5)


def test_a_gpt2_layout_is_found_and_other_layouts_are_refused(tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from factorscope.ingest.intervene import Edit, Intervener, _layout
    from factorscope.ingest.model import default_model_path, load_model
    from factorscope.ingest.runner import tokenize

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    loaded = load_model(str(tmp_path / "gpt2"))
    intervener = Intervener.from_loaded(loaded)
    assert (intervener.layout, intervener.output_kind) == ("gpt2", "causal-lm")
    assert intervener.can_resume and intervener.head is not None
    (ts,) = tokenize(loaded, [SENTENCES[1]])
    at = ts.positions[:2]
    delta = np.full((2, 32), 0.5, dtype=np.float32)
    clean, edited = intervener.run([ts, ts], [[], [Edit(LAST, at, delta)]], read_positions=[at, at])
    # an edit at the last layer reaches the head and nothing else
    assert np.allclose(edited.states[LAST][:2], clean.states[LAST][:2] + delta, atol=1e-5)
    direct = intervener.head_logits(clean.states[LAST][:2] + delta)
    assert np.allclose(direct, edited.logits, atol=1e-4)

    class Odd:
        config = type("C", (), {"model_type": "odd"})()

    with pytest.raises(ModelLoadError, match="BERT-like and GPT-2-like"):
        _layout(Odd())


# ----------------------------------------------------------------------------- steering


def test_steering_changes_the_layers_above_and_none_below(
    tiny_pipeline_db: Path, tmp_path: Path
) -> None:
    db = copy_db(tiny_pipeline_db, tmp_path)
    model = EffectModel.from_db(db)
    factor, layer = 5, 1
    result = model.steer(SENTENCES[2], factor, layer, 3.0)
    assert [x.layer for x in result.layers] == list(range(LAST + 1))
    below, at, above = result.layers
    assert below.before == below.after and below.changed == 0
    assert all(c == pytest.approx(1.0) for c in below.state_cosine)
    for x in (at, above):
        assert x.changed > 0 and min(x.state_cosine) < 0.999
    # the steered factor itself rises where it was added
    assert all(a > b for a, b in zip(at.factor_after, at.factor_before, strict=True))
    assert result.embedding_cosine < 1.0 and result.predictions is None
    assert all(t.steered for t in result.tokens)
    # one token only: the others' states at the steered layer do not move
    one = model.steer(SENTENCES[2], factor, layer, 3.0, positions=[result.tokens[1].position])
    assert [t.steered for t in one.tokens].count(True) == 1
    cos = one.layers[layer].state_cosine
    assert cos[1] < 0.999 and all(c == pytest.approx(1.0) for i, c in enumerate(cos) if i != 1)
    for bad in (
        dict(text="", factor=1, layer=1, strength=1.0),
        dict(text="a b", factor=10**6, layer=1, strength=1.0),
        dict(text="a b", factor=1, layer=9, strength=1.0),
        dict(text="a b", factor=1, layer=1, strength=float("nan")),
    ):
        with pytest.raises(InputError):
            model.steer(**bad)
    with pytest.raises(InputError, match="positions"):
        model.steer("a b", 1, 1, 1.0, positions=[999])


# ----------------------------------------------------------------------------- kill-safe


def _effect_tables(db: Path) -> dict[str, pl.DataFrame]:
    return {
        "factor_effects": _frame(
            db,
            "SELECT * EXCLUDE (seconds, computed_at, settings) FROM factor_effects ORDER BY ALL",
        ),
        "factor_effect_sentences": _frame(
            db, "SELECT * EXCLUDE (rank) FROM factor_effect_sentences ORDER BY ALL"
        ),
        "effects_chunks": _frame(
            db,
            "SELECT dictionary_id, chunk, n_factors, CAST(settings AS VARCHAR) AS settings "
            "FROM effects_chunks ORDER BY ALL",
        ),
    }


def test_a_killed_effects_stage_resumes_to_the_same_tables(
    tiny_pipeline_db: Path, tmp_path: Path
) -> None:
    config = "EffectsConfig(chunk_factors=8)"
    (tmp_path / "reference").mkdir()
    reference = copy_db(tiny_pipeline_db, tmp_path / "reference")
    run_effects(reference, EffectsConfig(chunk_factors=8))
    db = copy_db(tiny_pipeline_db, tmp_path)
    script = (
        "from factorscope.stages.effects import EffectsConfig, run_effects; "
        f"run_effects({str(db)!r}, {config})"
    )
    env = {**os.environ, "FACTORSCOPE_PROGRESS": "0", "FACTORSCOPE_CRASH_AT": "effects.chunk:2"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-1500:]
    # mid-stage: 2 chunks committed in the staging copy, more to do, nothing published
    total = _rows(reference, "SELECT count(*) FROM effects_chunks")[0][0]
    assert total > 2
    assert _rows(wip_path(db), "SELECT count(*) FROM effects_chunks")[0][0] == 2
    staged = _rows(wip_path(db), "SELECT count(DISTINCT factor) FROM factor_effects")[0][0]
    assert 0 < staged < _rows(reference, "SELECT count(*) FROM factor_effects")[0][0]
    con = connect(db, read_only=True)
    try:
        assert (
            not ew.has_effect_tables(con)
            or not con.execute("SELECT count(*) FROM factor_effects").fetchall()[0][0]
        )
    finally:
        con.close()

    resumed = run_effects(db, EffectsConfig(chunk_factors=8))
    assert resumed.chunks_reused == 2 and resumed.chunks_done == total - 2
    assert not wip_path(db).exists()
    want, got = _effect_tables(reference), _effect_tables(db)
    assert_tables_match(
        want["factor_effects"],
        got["factor_effects"],
        name="factor_effects",
        key=["factor", "layer"],
    )
    assert_tables_match(
        want["factor_effect_sentences"],
        got["factor_effect_sentences"],
        name="factor_effect_sentences",
        key=["factor", "layer", "sentence_idx"],
    )
    assert want["effects_chunks"].equals(got["effects_chunks"])


# ----------------------------------------------------------------------------- the command


def test_the_command_keeps_the_error_promise_and_its_defaults(
    tiny_pipeline_db: Path, tmp_path: Path, capsys
) -> None:
    from typer.main import get_command

    from factorscope.cli import app
    from factorscope.limits import LIMITS

    params = {p.name: p for p in get_command(app).commands["effects"].params}
    assert params["contexts"].default == EffectsConfig.n_contexts
    assert LIMITS["factors"].check(params["factors"].default, "--factors") == (
        EffectsConfig.max_factors
    )
    assert params["dictionary"].default == EffectsConfig.dictionary_id

    db = copy_db(tiny_pipeline_db, tmp_path)
    before = db.read_bytes()
    for args, words in (
        (["--contexts", "0"], "--contexts"),
        (["--factors", "none-of-these"], "--factors"),
        (["--dictionary", "9"], "does not exist"),
        (["--dictionay", "1"], "No such option"),
    ):
        code = main(["effects", "--db", str(db), *args])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0], err
    assert db.read_bytes() == before
    assert not wip_path(db).exists()

    done = subprocess.run(
        [*CLI, "effects", "--db", str(db), "--factors", "5", "--contexts", "4"],
        env={**os.environ, "FACTORSCOPE_PROGRESS": "0"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "a sample of 5 factors" in done.stdout
    assert _rows(db, "SELECT count(*), min(n_sentences) <= 4 FROM factor_effects") == [(5, True)]


def test_settings_are_checked() -> None:
    with pytest.raises(InputError):
        EffectSettings(n_contexts=0)
    with pytest.raises(InputError):
        EffectsConfig(max_factors=0)
