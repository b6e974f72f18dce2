"""A complete, realistic-looking factorscope database without a model (tests, benchmarks).

Sentences are drawn from a small English word list with Zipf frequencies, one token
per word. Every factor has a peak layer (so low, mid and high levels all occur) and a
popularity; every vocabulary word has a factor it strongly activates near that
factor's peak. Codes are drawn per layer with numpy, ``mean_l0`` non-zeros per token
and layer on average, and written chunk by chunk through :mod:`.store` exactly as the
encode pipeline writes them, then summarised with :func:`.summaries.refresh_summaries`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from factorscope.errors import InputError
from factorscope.limits import token_id
from factorscope.warehouse import publish, store
from factorscope.warehouse.explanations import EXPLANATION_COLUMNS, SCORE_COLUMNS
from factorscope.warehouse.summaries import refresh_summaries

log = logging.getLogger(__name__)

_WORD_TEXT = """
the of and to a in is it you that he was for on are with as his they be at one have
this from or had by hot word but what some we can out other were all there when up use
your how said an each she which do their time if will way about many then them write
would like so these her long make thing see him two has look more day could go come did
number sound no most people my over know water than call first who may down side been
now find any new work part take get place made live where after back little only round
man year came show every good me give our under name very through just form sentence
great think say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand port large
spell add even land here must big high such follow act why ask men change went light kind
off need house picture try us again animal point mother world near build self earth
father head stand own page should country found answer school grow study still learn
plant cover food sun four between state keep eye never last let thought city tree cross
farm hard start might story saw far sea draw left late run while press close night real
life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second
book carry took science eat room friend began idea fish mountain stop once base hear horse
cut sure watch color face wood main enough plain girl usual young ready above ever red
list though feel talk bird soon body dog family direct pose leave song measure door
product black short numeral class wind question happen complete ship area half rock order
fire south problem piece told knew pass since top whole king space heard best hour better
true during hundred five remember step early hold west ground interest reach fast verb
sing listen six table travel less morning ten simple several vowel toward war lay against
pattern slow center love person money serve appear road map rain rule govern pull cold
notice voice unit power town fine certain fly fall lead cry dark machine note wait plan
figure star box noun field rest correct able pound done beauty drive stood contain front
teach week final gave green oh quick develop ocean warm free minute strong special mind
behind clear tail produce fact street inch multiply nothing course stay wheel full force
blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate miss
brought heat snow tire bring yes distant fill east paint language among drink drunk wine
beer alcohol smoke leaving leaves
"""
WORDS = tuple(_WORD_TEXT.split())
"""The vocabulary of synthetic sentences (common English words)."""


# Over 80 lines: a test-data generator that fills every table in schema order.
def build_synthetic_db(
    path: str | Path,
    *,
    n_sentences: int = 2000,
    n_layers: int = 7,
    n_factors: int = 256,
    hidden_size: int = 32,
    mean_l0: int = 12,
    seed: int = 0,
    chunk_size: int = 1000,
    refresh: bool = True,
) -> Path:
    """Create (and publish atomically) a synthetic database at ``path``; returns ``path``.

    About ``n_sentences * 12 * n_layers * mean_l0`` code rows: 2,000 sentences give
    ~2M, 30,000 about 30M. An existing database at ``path`` is replaced; its
    ``user_labels`` and ``lime_cache`` rows are kept, as with a real encode.
    """
    for name, value in (
        ("n_sentences", n_sentences),
        ("n_layers", n_layers),
        ("n_factors", n_factors),
        ("hidden_size", hidden_size),
        ("mean_l0", mean_l0),
        ("chunk_size", chunk_size),
    ):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    path = Path(path)
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS, dtype=object)
    n_vocab = vocab.size

    # Factors: a peak layer, a popularity and a unit-norm atom each.
    peaks = rng.integers(0, n_layers, size=n_factors)
    popularity = rng.lognormal(0.0, 1.0, size=n_factors)
    atoms = rng.standard_normal((n_factors, hidden_size)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    layer_grid = np.arange(n_layers)[:, None]
    shape = np.exp(-0.5 * ((layer_grid - peaks[None, :]) / 1.0) ** 2)  # (n_layers, n_factors)
    weights = shape * popularity[None, :]
    cdfs = np.cumsum(weights, axis=1)
    cdfs /= cdfs[:, -1:]
    # Each word strongly activates one factor near that factor's peak layer.
    word_factor = rng.integers(0, n_factors, size=n_vocab)
    zipf = 1.0 / (np.arange(n_vocab) + 3.0)
    zipf /= zipf.sum()

    with publish.staged_database(path, fresh=True) as con:
        token_chunks = _write_ingest(
            con, rng, vocab, zipf, n_sentences, n_layers, hidden_size, chunk_size, seed
        )

        dictionary_id = store.save_dictionary(
            con,
            components=atoms,
            lambda1=0.1,
            preprocessing={"center": False, "scale": None},
            params={"n_components": n_factors, "alpha": 0.1, "synthetic": True},
            seed=seed,
            fit_seconds=1.0,
            source="synthetic",
        )
        store.begin_encoding(con, dictionary_id)
        for chunk, (token_ids, word_ids) in enumerate(token_chunks):
            codes, stats = _make_codes(
                rng, token_ids, word_ids, cdfs, shape, word_factor, mean_l0, hidden_size
            )
            store.write_encode_chunk(
                con,
                dictionary_id=dictionary_id,
                chunk=chunk,
                codes=codes,
                stats=stats,
                seconds=0.01,
            )
        store.finish_encoding(con, dictionary_id)
        if refresh:
            refresh_summaries(con)
    log.info("synthetic database written to %s", path)
    return path


def _write_ingest(
    con: duckdb.DuckDBPyConnection,
    rng: np.random.Generator,
    vocab: np.ndarray,
    zipf: np.ndarray,
    n_sentences: int,
    n_layers: int,
    hidden_size: int,
    chunk_size: int,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The run: sentences, tokens and a hidden-state sample, chunk by chunk, as ingest
    writes them; returns each chunk's (token ids, word ids) for the codes."""
    n_chunks = (n_sentences + chunk_size - 1) // chunk_size
    store.create_run(
        con,
        model="synthetic",
        model_path=None,
        revision=None,
        corpus="synthetic-words",
        config={"synthetic": True, "seed": seed, "n_sentences": n_sentences},
        config_hash=f"synthetic-{seed}-{n_sentences}",
        n_layers=n_layers,
        hidden_size=hidden_size,
        n_sentences=n_sentences,
        n_tokens=0,
        n_chunks=n_chunks,
        sample_size=0,
        status="ingesting",
        factorscope_version="synthetic",
    )
    token_chunks: list[tuple[np.ndarray, np.ndarray]] = []
    n_tokens_total = 0
    n_sampled_total = 0
    for chunk in range(n_chunks):
        start = chunk * chunk_size
        stop = min(start + chunk_size, n_sentences)
        sentences, tokens, word_ids = _make_text(rng, vocab, zipf, start, stop)
        token_ids = tokens.column("token_id").to_numpy()
        n_sample = min(token_ids.size, max(1, 4096 // n_chunks))
        picked = np.sort(rng.choice(token_ids.size, size=n_sample, replace=False))
        sample_layers = np.repeat(np.arange(n_layers, dtype=np.int16), n_sample)
        sample_ids = np.tile(token_ids[picked], n_layers)
        sample_vectors = rng.standard_normal((sample_ids.size, hidden_size)).astype(np.float32)
        store.write_ingest_chunk(
            con,
            chunk=chunk,
            sentences=sentences,
            tokens=tokens,
            sample_layers=sample_layers,
            sample_token_ids=sample_ids,
            sample_vectors=sample_vectors,
            seconds=0.01,
        )
        token_chunks.append((token_ids, word_ids))
        n_tokens_total += token_ids.size
        n_sampled_total += sample_ids.size
    con.execute(
        "UPDATE runs SET n_tokens = ?, sample_size = ? WHERE run_id = 1",
        [n_tokens_total, n_sampled_total],
    )
    store.finish_run(con, 1.0)
    return token_chunks


def _make_text(
    rng: np.random.Generator, vocab: np.ndarray, zipf: np.ndarray, start: int, stop: int
) -> tuple[pa.Table, pa.Table, np.ndarray]:
    n = stop - start
    lengths = rng.integers(6, 19, size=n)
    word_ids = rng.choice(vocab.size, size=int(lengths.sum()), p=zipf)
    sentence_rows: dict[str, list] = {
        "sentence_idx": [],
        "sentence_id": [],
        "source": [],
        "text": [],
        "n_tokens": [],
    }
    tok: dict[str, list] = {
        k: []
        for k in (
            "token_id",
            "sentence_idx",
            "position",
            "piece",
            "vocab_id",
            "word",
            "word_index",
            "char_start",
            "char_end",
            "word_start",
            "word_end",
        )
    }
    cursor = 0
    for i in range(n):
        sentence_idx = start + i
        ids = word_ids[cursor : cursor + lengths[i]]
        cursor += lengths[i]
        words = [str(vocab[j]) for j in ids]
        shown = [words[0].capitalize(), *words[1:]]
        text = " ".join(shown) + "."
        offset = 0
        for wi, (word, vid) in enumerate(zip(shown, ids, strict=True)):
            tok["token_id"].append(token_id(sentence_idx, wi + 1))
            tok["sentence_idx"].append(sentence_idx)
            tok["position"].append(wi + 1)
            tok["piece"].append(word.lower())
            tok["vocab_id"].append(int(vid) + 1000)
            tok["word"].append(word)
            tok["word_index"].append(wi)
            tok["char_start"].append(offset)
            tok["char_end"].append(offset + len(word))
            tok["word_start"].append(offset)
            tok["word_end"].append(offset + len(word))
            offset += len(word) + 1
        sentence_rows["sentence_idx"].append(sentence_idx)
        sentence_rows["sentence_id"].append(hashlib.sha1(text.encode()).hexdigest()[:16])
        sentence_rows["source"].append("synthetic")
        sentence_rows["text"].append(text)
        sentence_rows["n_tokens"].append(len(words))
    tokens = store.tokens_table(tok)
    sentences = store.sentences_table(sentence_rows)
    return sentences, tokens, np.asarray(word_ids)


def _make_codes(
    rng: np.random.Generator,
    token_ids: np.ndarray,
    word_ids: np.ndarray,
    cdfs: np.ndarray,
    shape: np.ndarray,
    word_factor: np.ndarray,
    mean_l0: int,
    hidden_size: int,
    residual_scale: float = 1.0,
) -> tuple[pa.Table, pa.Table]:
    n_layers, n_factors = cdfs.shape
    n_tok = token_ids.size
    layers_out, factors_out, tokens_out, alphas_out = [], [], [], []
    stats: dict[str, list] = {
        k: []
        for k in ("layer", "n_vectors", "sq_residual", "sq_norm", "sum_x", "sum_l0", "n_zero_codes")
    }
    background = max(mean_l0 - 1, 0)
    for layer in range(n_layers):
        counts = rng.poisson(background, size=n_tok)
        rows = np.repeat(np.arange(n_tok), counts)
        factors = np.searchsorted(cdfs[layer], rng.random(rows.size), side="right")
        factors = np.minimum(factors, n_factors - 1)
        alphas = rng.gamma(2.0, 0.12, size=rows.size) * (0.3 + shape[layer, factors])
        # The word's own factor, strong near its peak layer.
        own = word_factor[word_ids]
        strength = shape[layer, own]
        active = strength > 0.05
        own_rows = np.nonzero(active)[0]
        own_alpha = (1.0 + rng.gamma(4.0, 0.25, size=own_rows.size)) * strength[active]
        rows = np.concatenate([rows, own_rows])
        factors = np.concatenate([factors, own[active]])
        alphas = np.concatenate([alphas, own_alpha])
        # One alpha per (token, factor): keep the largest.
        key = rows.astype(np.int64) * n_factors + factors
        order = np.lexsort((-alphas, key))
        key, alphas = key[order], alphas[order]
        first = np.ones(key.size, dtype=bool)
        first[1:] = key[1:] != key[:-1]
        key, alphas = key[first], alphas[first]
        rows, factors = key // n_factors, key % n_factors
        layers_out.append(np.full(key.size, layer, dtype=np.int16))
        factors_out.append(factors.astype(np.int32))
        tokens_out.append(token_ids[rows])
        alphas_out.append(alphas.astype(np.float32))
        sq_norm = float(n_tok * hidden_size)
        sum_x = rng.normal(0.0, np.sqrt(n_tok), size=hidden_size)
        centred = sq_norm - float(np.sum(sum_x**2)) / n_tok
        stats["layer"].append(layer)
        stats["n_vectors"].append(n_tok)
        stats["sq_residual"].append(min(1.0, residual_scale * (0.15 + 0.05 * layer)) * centred)
        stats["sq_norm"].append(sq_norm)
        stats["sum_x"].append(sum_x.tolist())
        stats["sum_l0"].append(int(key.size))
        stats["n_zero_codes"].append(int(n_tok - np.unique(rows).size))
    codes = pa.table(
        {
            "layer": pa.array(np.concatenate(layers_out)),
            "factor": pa.array(np.concatenate(factors_out)),
            "token_id": pa.array(np.concatenate(tokens_out).astype(np.int64)),
            "alpha": pa.array(np.concatenate(alphas_out)),
        }
    )
    return codes, store.stats_table(stats)


# ----------------------------------------------------------------------------- evidence

CONTROL_RESIDUAL = 3.0
"""A synthetic control reconstructs worse: its FVU is this many times the parent's."""


def add_synthetic_evidence(
    path: str | Path,
    *,
    n_controls: int = 1,
    explain: bool = True,
    seed: int = 1,
) -> list[int]:
    """Add ``n_controls`` control dictionaries (kind 'control', parent: the active
    dictionary) to the synthetic database at ``path``, encoded and summarised, and with
    ``explain`` plausible ``factorscope explain`` rows for the parent and its controls
    (test data: the rules are made up from the codes, not fitted). Returns the controls'
    ids; published like any stage.

    The parent's factors get a word rule where one word makes most of their activity at
    a layer and high held-out detection; the controls' rules are weaker (detection
    nearer chance, few word rules), and their FVU is :data:`CONTROL_RESIDUAL` times the
    parent's, at the same mean L0.
    """
    if n_controls < 0:
        raise InputError(f"n_controls must be at least 0, got {n_controls}")
    rng = np.random.default_rng(seed)
    with publish.staged_database(path) as con:
        parent = int(
            con.execute(
                "SELECT dictionary_id FROM dictionaries WHERE coalesce(kind, 'learned') "
                "<> 'control' AND status = 'encoded' ORDER BY dictionary_id DESC LIMIT 1"
            ).fetchall()[0][0]
        )
        n_factors, hidden_size = con.execute(
            "SELECT n_factors, hidden_size FROM dictionaries WHERE dictionary_id = ?", [parent]
        ).fetchall()[0]
        n_layers, n_chunks = con.execute("SELECT n_layers, n_chunks FROM runs").fetchall()[0]
        mean_l0 = con.execute(
            "SELECT round(avg(mean_l0)) FROM layer_quality WHERE dictionary_id = ?", [parent]
        ).fetchall()[0][0]
        tokens = con.execute(
            "SELECT token_id, vocab_id - 1000 AS word_id, sentence_idx FROM tokens "
            "ORDER BY token_id"
        ).fetchnumpy()
        controls = [
            _add_control(
                con,
                rng,
                parent,
                tokens,
                int(n_factors),
                int(hidden_size),
                int(n_layers),
                int(n_chunks),
                int(mean_l0 or 1),
            )
            for _ in range(n_controls)
        ]
        if explain:
            for dictionary_id, quality in [(parent, 1.0)] + [(c, 0.35) for c in controls]:
                _explain_synthetic(con, rng, dictionary_id, int(n_layers), quality)
    return controls


def _add_control(
    con: duckdb.DuckDBPyConnection,
    rng: np.random.Generator,
    parent: int,
    tokens: dict[str, np.ndarray],
    n_factors: int,
    hidden_size: int,
    n_layers: int,
    n_chunks: int,
    mean_l0: int,
) -> int:
    atoms = rng.standard_normal((n_factors, hidden_size)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    dictionary_id = store.save_dictionary(
        con,
        components=atoms,
        lambda1=0.05,
        preprocessing={"center": False, "scale": None},
        params={"n_components": n_factors, "synthetic": True, "control": "gaussian"},
        seed=int(rng.integers(0, 2**31)),
        fit_seconds=0.1,
        source="control:gaussian",
        kind="control",
        parent_id=parent,
    )
    peaks = rng.integers(0, n_layers, size=n_factors)
    shape = np.exp(-0.5 * ((np.arange(n_layers)[:, None] - peaks[None, :]) / 2.0) ** 2)
    cdfs = np.cumsum(shape, axis=1)
    cdfs /= cdfs[:, -1:]
    word_factor = rng.integers(0, n_factors, size=int(tokens["word_id"].max()) + 1)
    store.begin_encoding(con, dictionary_id)
    groups = np.array_split(np.unique(tokens["sentence_idx"]), max(n_chunks, 1))
    for chunk, sentences in enumerate(groups):
        if sentences.size == 0:
            continue
        rows = np.isin(tokens["sentence_idx"], sentences)
        codes, stats = _make_codes(
            rng,
            tokens["token_id"][rows],
            tokens["word_id"][rows],
            cdfs,
            0.4 * shape,
            word_factor,
            mean_l0,
            hidden_size,
            residual_scale=CONTROL_RESIDUAL,
        )
        store.write_encode_chunk(
            con, dictionary_id=dictionary_id, chunk=chunk, codes=codes, stats=stats, seconds=0.01
        )
    store.finish_encoding(con, dictionary_id)
    refresh_summaries(con, dictionary_id=dictionary_id)
    return dictionary_id


def _explain_synthetic(
    con: duckdb.DuckDBPyConnection,
    rng: np.random.Generator,
    dictionary_id: int,
    n_layers: int,
    quality: float,
) -> None:
    """Made-up explanations and held-out scores of every factor at every layer, as
    ``warehouse.explanations.write_explained_layer`` stores the real ones."""
    from factorscope.warehouse.explanations import write_explained_layer

    n_factors = int(
        con.execute(
            "SELECT n_factors FROM dictionaries WHERE dictionary_id = ?", [dictionary_id]
        ).fetchall()[0][0]
    )
    for layer in range(n_layers):
        found = con.execute(
            """
            WITH w AS (
                SELECT c.factor, lower(t.word) AS word, count(*) AS n,
                       sum(c.alpha * c.alpha) AS energy
                FROM codes c JOIN tokens t USING (token_id)
                WHERE c.dictionary_id = ? AND c.layer = ?
                GROUP BY ALL
            )
            SELECT factor, arg_max(word, energy), max(energy) / sum(energy), sum(n)
            FROM w GROUP BY factor
            """,
            [dictionary_id, layer],
        ).fetchall()
        by_factor = {int(f): (str(word), float(purity), int(n)) for f, word, purity, n in found}
        expl: dict[str, list] = {k: [] for k in _EXPLANATION_KEYS}
        scores: dict[str, list] = {k: [] for k in _SCORE_KEYS}
        for factor in range(n_factors):
            word, purity, n = by_factor.get(factor, ("", 0.0, 0))
            _synthetic_rule(rng, factor, word, purity, n, quality, expl, scores)
        write_explained_layer(
            con, dictionary_id, layer, expl, scores, {"synthetic": True}, seconds=0.01
        )


# The columns the explain stage writes (one definition: warehouse/explanations.py).
_EXPLANATION_KEYS = EXPLANATION_COLUMNS
_SCORE_KEYS = SCORE_COLUMNS
_MIN_ACTIVE = 20  # as evidence.explain.RuleSettings.min_active


def _synthetic_rule(
    rng: np.random.Generator,
    factor: int,
    word: str,
    purity: float,
    n: int,
    quality: float,
    expl: dict[str, list],
    scores: dict[str, list],
) -> None:
    """Append one factor's made-up explanation and score to the columns."""
    n_train = round(0.8 * n)
    n_test = n - n_train
    row = {"factor": factor, "n_active_train": n_train}
    score: dict = {"factor": factor, "n_active": n_test, "n_inactive": 10_000 - n_test}
    if n_train < _MIN_ACTIVE or n_test == 0:
        text = f"too rare to explain ({n_train} active training tokens; {_MIN_ACTIVE} needed)"
        row.update(explained=False, text=text, rule=None, rule_kind=None, n_terms=0)
        row["train_detection"] = None
        score.update(dict.fromkeys(_SCORE_KEYS[3:]), n_sentences=0)
    else:
        if quality * purity > 0.3 and rng.random() < 0.9:
            terms, text, kind = [("word", word)], f"the word “{word}”", "word"
        elif rng.random() < 0.5:
            terms, text, kind = [("pos", "NOUN")], "nouns", "pos"
        else:
            terms, text = [("pos", "NOUN"), ("prev", "the")], "nouns after “the”"
            kind = "conjunction"
        noise = 0.15 * rng.random() + rng.normal(0, 0.03)
        detection = float(np.clip(0.5 + quality * 0.45 * purity + quality * noise, 0, 1))
        train = float(np.clip(detection + 0.02, 0, 1))
        if train < 0.6:
            text = (
                f"no short rule explains it (best: {text}, detection {train:.2f} "
                "on training sentences)"
            )
        half = 1.96 * 0.5 * np.sqrt(max(detection * (1 - detection), 0.01) / n_test)
        row.update(
            explained=train >= 0.6,
            text=text,
            rule=json.dumps([{"feature": f, "value": v} for f, v in terms]),
            rule_kind=kind,
            n_terms=len(terms),
            train_detection=train,
        )
        score.update(
            detection=detection,
            detection_low=max(0.0, detection - half),
            detection_high=min(1.0, detection + half),
            detection_top=min(1.0, detection + 0.04),
            auroc=min(1.0, detection + 0.02),
            precision=float(np.clip(purity * quality + 0.1, 0, 1)),
            n_sentences=n_test,
            localisation=float(np.clip(0.2 + 0.6 * purity * quality, 0, 1)),
            localisation_chance=1 / 12,
        )
    for key in _EXPLANATION_KEYS:
        expl[key].append(row[key])
    for key in _SCORE_KEYS:
        scores[key].append(score[key])


def connect_synthetic(path: str | Path, **kwargs) -> duckdb.DuckDBPyConnection:
    """Build a synthetic database at ``path`` and open it read-only (test helper)."""
    from factorscope.warehouse.connection import connect

    build_synthetic_db(path, **kwargs)
    return connect(path, read_only=True)
