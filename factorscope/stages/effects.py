"""`factorscope effects`: what a factor *does*, measured by removing it (and steering).

**Ablation.** For factor ``c`` at layer ``l``: at every token of its top-context
sentences where ``c`` is active (the first ``n_contexts`` distinct sentences of its top
contexts at ``l``, the stored codes giving each token's ``alpha``), its contribution
``alpha * phi_c``, mapped back through the dictionary's preprocessing into the model's
space (``alpha * phi_c / scale[l]``: the centring cancels in a difference), is
subtracted from hidden state ``l``, and the real model runs its remaining layers
(:mod:`factorscope.ingest.intervene`). Measured against the clean pass:

- ``state_change`` / ``state_cosine``: the same tokens' state at the last layer,
  ``||x' - x|| / ||x||`` and ``cos(x', x)``, averaged over the edited tokens;
- ``embedding_shift`` / ``embedding_change``: the pooled sentence embedding (the mean of
  the last layer over every attended position, as sentence-transformers pools MiniLM),
  ``1 - cos`` and ``||p' - p|| / ||p||``, averaged over the sentences;
- with a language-model head (masked or causal; ``output_kind``): ``output_kl``, the
  mean ``KL(clean || ablated)`` of the output distribution at the edited tokens (nats),
  ``top_logprob_change``, the mean change of the log-probability of the clean top
  prediction there, and the **output tokens**: ``effect[t] = mean(logit_clean(t) -
  logit_ablated(t))`` over the edited tokens (logits, not log-probabilities: a token the
  factor pushes up by many nats would otherwise shift every other token's
  log-probability by the same normaliser); the ``top_tokens`` largest are the tokens the
  factor *promotes* (removing it lowers their logits), the most negative those it
  *suppresses*.
- **Direct effect** (a head that maps the last hidden state to logits, ``cls`` for BERT,
  ``lm_head`` for GPT-2): the head alone on the clean last-layer states of the same
  tokens, with ``alpha * phi_c / scale[L]`` (the atom read on the last layer's scale)
  removed there, no upper layers in between. A BERT MLM head is not linear (dense,
  GELU, LayerNorm, then the tied decoder), so there is no fixed "atom times unembedding"
  table: the direct effect is this finite difference at the factor's own contexts. At
  the last layer it equals the ablation's output effect by construction.

**Control.** At the same tokens, a random direction (one per factor and layer, seeded by
``(seed, factor, layer)``) of exactly the norm of ``alpha * phi_c / scale[l]`` is
subtracted instead; every measure above is taken for it too (``control_*``).
Neighbours' effects are read from their own stored rows (``warehouse.effects.
neighbor_effects``).

**The stage** measures every factor that fires at its peak layer (``summary_levels``),
one chunk of ``chunk_factors`` factors per transaction in ``<db>.wip`` (crash point
``effects.chunk``): a killed run resumes at the first chunk not written, and a chunk
measured with other settings (or holding other factors) is measured again.
``--factors N`` measures a uniform sample: the first N factors of a seeded random order
(a larger N holds a smaller one). Chunks are formed by peak layer: a chunk's edited
passes run together, sorted by length, and resume from the clean states of their layer
(only the blocks above it run again), and the clean passes of sentences that several
chunks share are kept between them. On the demo run (4,000 sentences, 1,024 factors,
MiniLM) the whole stage costs about 8 CPU-minutes: 9 minutes here on 2 cores that other
work shared (bench/bench_effects.py), so every factor is the default.

**On demand** (the factor page): :func:`effect_for_page` reads a stored effect of any
(factor, layer), else measures it (0.3 s median for MiniLM) and stores it in the same
tables (source 'on-demand').

**Steering** (:meth:`EffectModel.steer`): add ``strength * phi_c / scale[l]`` at layer
``l`` to chosen tokens of any text, and compare every layer's decomposition (the
dictionary's codes, as ``RunCoder`` codes text), the sentence embedding and, with a head,
the top predictions, before and after.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError
from factorscope.ingest.intervene import Edit, ForwardResult, Intervener
from factorscope.ingest.model import LoadedModel
from factorscope.ingest.runner import TokenizedSentence, tokenize
from factorscope.progress import progress_bar
from factorscope.sparse import SparseEncoder
from factorscope.stages.live import RunCoder
from factorscope.stages.sharding import run_shard
from factorscope.warehouse import effects as ew
from factorscope.warehouse import queries, store
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import check_db_path_writable, staged_database, wip_path

MAX_STEER_CHARS = 2000
MAX_STRENGTH = 1000.0


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EffectSettings:
    """What one measurement depends on (stored with every row as ``settings``)."""

    n_contexts: int = 16
    """Top-context sentences the factor is removed from."""
    top_tokens: int = 10
    """Output tokens kept per direction (models with a head)."""
    seed: int = 0
    """Seeds the control's random direction (with the factor and the layer)."""

    def __post_init__(self) -> None:
        if not 1 <= self.n_contexts <= 200:
            raise InputError(f"n_contexts must be from 1 to 200, not {self.n_contexts}")
        if not 1 <= self.top_tokens <= 100:
            raise InputError(f"top_tokens must be from 1 to 100, not {self.top_tokens}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EffectsConfig:
    """Which dictionary `factorscope effects` measures (None: the default one) and how."""

    dictionary_id: int | None = None
    n_contexts: int = 16
    max_factors: int | None = None
    """Measure a seeded uniform sample of this many factors (None: every factor that fires)."""
    force: bool = False
    """Measure again the chunks already measured with these settings."""
    chunk_factors: int = 32
    """Factors per committed chunk (what a killed run loses at most)."""
    batch_size: int = 64
    top_tokens: int = 10
    seed: int = 0
    device: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        self.settings()  # checks n_contexts and top_tokens
        if self.max_factors is not None and self.max_factors < 1:
            raise InputError(f"max_factors must be at least 1, not {self.max_factors}")
        if self.chunk_factors < 1 or self.batch_size < 1:
            raise InputError("chunk_factors and batch_size must be at least 1")

    def settings(self) -> EffectSettings:
        return EffectSettings(
            n_contexts=self.n_contexts, top_tokens=self.top_tokens, seed=self.seed
        )

    def chunk_settings(self) -> dict[str, Any]:
        """What a finished chunk must match to be reused (the chunking included)."""
        return {**self.settings().to_dict(), "chunk_factors": self.chunk_factors}


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Contexts:
    """Where one factor is active at one layer in its top sentences (from stored codes)."""

    factor: int
    layer: int
    sentence_idx: tuple[int, ...]
    positions: tuple[np.ndarray, ...]
    """Per sentence: the model-input positions where the factor is active."""
    alphas: tuple[np.ndarray, ...]
    """Per sentence: the factor's code at those positions."""


@dataclass(frozen=True)
class Measures:
    """The measures of one edit (the factor's removal, or the control's)."""

    state_change: float | None = None
    state_cosine: float | None = None
    embedding_shift: float | None = None
    embedding_change: float | None = None
    output_kl: float | None = None
    top_logprob_change: float | None = None


@dataclass(frozen=True)
class OutputToken:
    token_id: int
    token: str
    effect: float
    """Mean ``logit_clean(token) - logit_ablated(token)`` over the edited tokens."""


@dataclass(frozen=True)
class SentenceEffect:
    sentence_idx: int
    text: str
    n_tokens: int
    embedding_shift: float
    control_embedding_shift: float
    state_change: float


@dataclass(frozen=True)
class FactorEffect:
    """What removing one factor at one layer did (see the module docstring)."""

    dictionary_id: int
    factor: int
    layer: int
    output_kind: str
    n_sentences: int
    n_tokens: int
    mean_alpha: float | None
    edit_norm: float | None
    edit_rel: float | None
    ablation: Measures
    control: Measures
    output_tokens: dict[str, dict[str, list[OutputToken]]]
    """``{"ablation" | "direct": {"promoted" | "suppressed": [OutputToken, ...]}}``;
    empty without a head."""
    sentences: list[SentenceEffect]
    """The sentence whose embedding moved most first."""
    settings: dict[str, Any]
    seconds: float
    source: str = "stage"

    def to_dict(self) -> dict[str, Any]:
        """The shape :func:`factorscope.warehouse.effects.factor_effect` reads back."""
        row = self._effect_row()
        row["dictionary_id"] = self.dictionary_id
        return ew.assemble(row, self._token_rows(), self._sentence_rows(with_text=True))

    def _effect_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "factor": self.factor,
            "layer": self.layer,
            "source": self.source,
            "output_kind": self.output_kind,
            "n_sentences": self.n_sentences,
            "n_tokens": self.n_tokens,
            "mean_alpha": self.mean_alpha,
            "edit_norm": self.edit_norm,
            "edit_rel": self.edit_rel,
            "settings": self.settings,
            "seconds": self.seconds,
        }
        for name in ew.MEASURES:
            row[name] = getattr(self.ablation, name)
            row[f"control_{name}"] = getattr(self.control, name)
        return row

    def _token_rows(self) -> list[dict[str, Any]]:
        rows = []
        for kind in sorted(self.output_tokens):
            for direction in ("promoted", "suppressed"):
                for rank, t in enumerate(self.output_tokens[kind].get(direction, []), start=1):
                    rows.append(
                        {
                            "factor": self.factor,
                            "layer": self.layer,
                            "kind": kind,
                            "direction": direction,
                            "rank": rank,
                            "token_id": t.token_id,
                            "token": t.token,
                            "effect": t.effect,
                        }
                    )
        return rows

    def _sentence_rows(self, *, with_text: bool = False) -> list[dict[str, Any]]:
        rows = []
        for rank, s in enumerate(self.sentences, start=1):
            row = {
                "factor": self.factor,
                "layer": self.layer,
                "rank": rank,
                "sentence_idx": s.sentence_idx,
                "n_tokens": s.n_tokens,
                "embedding_shift": s.embedding_shift,
                "control_embedding_shift": s.control_embedding_shift,
                "state_change": s.state_change,
            }
            if with_text:
                row["text"] = s.text
            rows.append(row)
        return rows


def effect_rows(effects: Sequence[FactorEffect]) -> dict[str, dict[str, list]]:
    """The rows of ``effects`` for :func:`factorscope.warehouse.effects.write_effects_chunk`."""

    def columns(rows: list[dict], names: Sequence[str]) -> dict[str, list]:
        return {name: [r[name] for r in rows] for name in names}

    return {
        "factor_effects": columns([e._effect_row() for e in effects], ew.EFFECT_COLUMNS),
        "factor_output_tokens": columns(
            [r for e in effects for r in e._token_rows()], ew.TOKEN_COLUMNS
        ),
        "factor_effect_sentences": columns(
            [r for e in effects for r in e._sentence_rows()], ew.SENTENCE_COLUMNS
        ),
    }


# ----------------------------------------------------------------------------- steering results


@dataclass(frozen=True)
class SteerToken:
    """One stored token of the steered text (as the Analyze page shows it)."""

    position: int
    piece: str
    word: str
    text: str
    start: int
    end: int
    steered: bool


@dataclass(frozen=True)
class SteerLayer:
    """One layer's decomposition before and after steering, per token."""

    layer: int
    before: list[list[tuple[int, float]]]
    """Per token: its top factors (factor, alpha), strongest first."""
    after: list[list[tuple[int, float]]]
    factor_before: list[float]
    """Per token: the steered factor's alpha."""
    factor_after: list[float]
    state_cosine: list[float]
    """Per token: cos(state before, state after)."""
    changed: int
    """Tokens whose list of top factors changed."""


@dataclass(frozen=True)
class Prediction:
    """A head's top predictions at one steered token, before and after."""

    position: int
    before: list[tuple[str, float]]
    """(token, probability), most likely first."""
    after: list[tuple[str, float]]


@dataclass(frozen=True)
class SteerResult:
    text: str
    dictionary_id: int
    factor: int
    layer: int
    strength: float
    output_kind: str
    tokens: list[SteerToken]
    layers: list[SteerLayer]
    """Every layer, 0 to L: below ``layer`` nothing changes."""
    embedding_cosine: float
    """cos(pooled sentence embedding before, after)."""
    predictions: list[Prediction] | None
    """None for a model without a language-model head."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (for a dcc.Store)."""
        return asdict(self)


# ----------------------------------------------------------------------------- the model


@dataclass
class EffectModel:
    """The run's model (with its head, when it has one) and a dictionary, loaded once.

    Build it from a :class:`~factorscope.stages.live.RunCoder` or anything with the same
    fields (the app's ``LiveAnalyzer``), sharing its loaded model: :meth:`from_coder`.
    Calls from several threads run one at a time.
    """

    loaded: LoadedModel
    encoder: SparseEncoder
    dictionary_id: int
    max_length: int
    keep_special: bool
    intervener: Intervener
    _components: np.ndarray = field(init=False, repr=False)
    _scales: np.ndarray = field(init=False, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)
    """Held around every pass; :meth:`from_coder` shares the coder's own lock (the app's
    ``LiveAnalyzer._lock``), so its passes and these never run on the model at once
    (an edited pass hooks and swaps the model's modules while it runs)."""
    _cache: _CleanCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cache = _CleanCache()
        self._components = np.asarray(self.encoder.components_, dtype=np.float32)
        d = self._components.shape[1]
        # The preprocessing is x -> (x - mean[l]) * scale[l]: one scalar per layer, read
        # from the encoder's own map (a unit vector against the origin).
        probe = np.zeros((2, d), dtype=np.float32)
        probe[1, 0] = 1.0
        scales = []
        for layer in range(self.n_layers):
            pre = self.encoder.preprocess(probe, layers=np.array([layer, layer]))
            scales.append(float(pre[1, 0] - pre[0, 0]))
        self._scales = np.asarray(scales, dtype=np.float64)

    @classmethod
    def from_coder(cls, coder: Any, *, with_head: bool = True) -> EffectModel:
        """Wrap a RunCoder-like object (``loaded``, ``encoder``, ``dictionary_id``,
        ``max_length``, ``keep_special``; the app's ``LiveAnalyzer``, whose lock it
        shares), reusing its loaded model; loads the head when the model has one."""
        lock = getattr(coder, "_lock", None)
        lock = lock if lock is not None else threading.Lock()
        with lock:  # its load-time check runs passes on the shared model
            intervener = Intervener.from_loaded(coder.loaded, with_head=with_head)
        return cls(
            loaded=coder.loaded,
            encoder=coder.encoder,
            dictionary_id=int(coder.dictionary_id),
            max_length=int(coder.max_length),
            keep_special=bool(coder.keep_special),
            intervener=intervener,
            _lock=lock,
        )

    @classmethod
    def from_db(
        cls,
        db_path: str | Path,
        *,
        dictionary_id: int | None = None,
        device: str | None = None,
        threads: int | None = None,
    ) -> EffectModel:
        """The run of ``db_path`` with ``dictionary_id`` (default: the one the views show)."""
        with queries.WarehouseReader(db_path).connect() as con:
            coder = RunCoder.from_connection(
                con, dictionary_id=dictionary_id, device=device, threads=threads
            )
        return cls.from_coder(coder)

    @property
    def n_layers(self) -> int:
        return self.loaded.n_layers

    @property
    def n_factors(self) -> int:
        return int(self._components.shape[0])

    @property
    def output_kind(self) -> str:
        return self.intervener.output_kind

    def model_atom(self, factor: int, layer: int) -> np.ndarray:
        """``phi_c / scale[l]``: the atom in the model's space at ``layer`` (alpha 1)."""
        return (self._components[factor] / self._scales[layer]).astype(np.float32)

    def check(self, factor: Any, layer: Any) -> tuple[int, int]:
        """(factor, layer) as ints, or an InputError naming the valid ranges."""
        for value, name in ((factor, "factor"), (layer, "layer")):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InputError(f"{name} must be a whole number, not {value!r}")
        if not 0 <= int(factor) < self.n_factors:
            raise InputError(f"factor {factor} does not exist (0..{self.n_factors - 1})")
        if not 0 <= int(layer) < self.n_layers:
            raise InputError(f"layer {layer} does not exist (0..{self.n_layers - 1})")
        return int(factor), int(layer)

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedSentence]:
        return tokenize(
            self.loaded, list(texts), max_length=self.max_length, keep_special=self.keep_special
        )

    # ------------------------------------------------------------------ measuring

    def measure(
        self,
        items: Sequence[Contexts],
        texts: dict[int, str],
        settings: EffectSettings | None = None,
        *,
        batch_size: int = 64,
        source: str = "stage",
    ) -> list[FactorEffect]:
        """The effects of removing each (factor, layer) of ``items`` at its contexts.

        ``texts``: the text of every sentence the items name. The clean pass runs once
        for all the items' sentences, keeping each one's states at the layers its
        factors are removed at; each factor's edited passes resume from those (only the
        blocks above its layer run). With a head, a clean copy resumed the same way runs
        beside the edits for its log-probabilities (too large to keep for many).
        """
        settings = settings or EffectSettings()
        with self._lock:
            t0 = time.perf_counter()
            needed = sorted({i for c in items for i in c.sentence_idx})
            tokenized = dict(zip(needed, self.tokenize([texts[i] for i in needed]), strict=True))
            uses: dict[int, set[int]] = {i: set() for i in needed}
            for c in items:
                for i in c.sentence_idx:
                    uses[i].add(c.layer)
            clean = self._clean(tokenized, texts, uses, batch_size)
            shared = (time.perf_counter() - t0) / max(len(items), 1)
            plans = [self._plan_edits(c, tokenized, settings) for c in items]
            # without a head, a layer's factors run together; with one, a factor at a
            # time (its log-probabilities over the vocabulary are large)
            groups: dict[Any, list[int]] = {}
            for k, c in enumerate(items):
                groups.setdefault(k if self.intervener.has_head else c.layer, []).append(k)
            out: list[FactorEffect | None] = [None] * len(items)
            for members in groups.values():
                t1 = time.perf_counter()
                layer = items[members[0]].layer
                runs = self._run_plans(layer, [plans[k] for k in members], clean, batch_size)
                finished = [
                    self._finish(items[k], plans[k], r, clean, texts, settings)
                    for k, r in zip(members, runs, strict=True)
                ]
                each = (time.perf_counter() - t1) / len(members)
                for k, effect in zip(members, finished, strict=True):
                    out[k] = _with(effect, seconds=shared + each, source=source)
            return out  # type: ignore[return-value]

    def _clean(
        self,
        tokenized: dict[int, TokenizedSentence],
        texts: dict[int, str],
        uses: dict[int, set[int]],
        batch_size: int,
    ) -> dict[int, _Clean]:
        """Each sentence's clean pass: its last layer (kept positions), its pooled
        embedding and its states at the layers in ``uses`` at every position (the edited
        passes resume from them). Read from the cache where a pass left them; the
        sentences missing anything run once, together."""
        out: dict[int, _Clean] = {}
        todo = []
        for i, layers in uses.items():
            found = self._cache.get(texts[i], layers)
            if found is None:
                todo.append(i)
            else:
                out[i] = found
        if todo:
            runs = self.intervener.run(
                [tokenized[i] for i in todo],
                keep_full=[sorted(uses[i]) for i in todo],
                batch_size=batch_size,
            )
            last = self.n_layers - 1
            for i, run in zip(todo, runs, strict=True):
                out[i] = self._cache.put(texts[i], run.states[last], run.pooled, run.full)
        return out

    def _plan_edits(
        self, c: Contexts, tokenized: dict[int, TokenizedSentence], settings: EffectSettings
    ) -> _EditPlan:
        """The edited passes of one (factor, layer): per sentence, the factor's removal
        and the control's (and, with a head, a clean copy for its log-probabilities)."""
        atom = self.model_atom(c.factor, c.layer)
        atom_norm = float(np.linalg.norm(atom))
        rng = np.random.default_rng([settings.seed, c.factor, c.layer])
        direction = rng.standard_normal(atom.shape[0])
        direction = (direction / np.linalg.norm(direction)).astype(np.float32)
        plan = _EditPlan(atom_norm=atom_norm)
        for idx, positions, alphas in zip(c.sentence_idx, c.positions, c.alphas, strict=True):
            kept = tokenized[idx].positions
            rows = np.searchsorted(kept, positions)
            ok = (rows < kept.size) & (kept[np.minimum(rows, kept.size - 1)] == positions)
            ok &= alphas > 0
            if ok.any():  # a token cut off by the tokenizer is not in the run: skipped
                plan.used.append((idx, positions[ok], alphas[ok].astype(np.float32), rows[ok]))
        head = self.intervener.has_head
        for idx, positions, alphas, _rows in plan.used:
            ablate = -(alphas[:, None] * atom[None, :])
            control = -((alphas * atom_norm)[:, None] * direction[None, :])
            plan.sentences += [tokenized[idx], tokenized[idx]]
            plan.edits += [
                [Edit(c.layer, positions, ablate)],
                [Edit(c.layer, positions, control)],
            ]
            plan.read += [positions, positions]
            plan.stored += [idx, idx]
            if head:  # the clean log-probabilities, beside the edits (too large to keep)
                plan.sentences.append(tokenized[idx])
                plan.edits.append([])
                plan.read.append(positions)
                plan.stored.append(idx)
        return plan

    def _run_plans(
        self, layer: int, plans: list[_EditPlan], clean: dict[int, _Clean], batch_size: int
    ) -> list[list[ForwardResult]]:
        """The edited passes of several (factor, layer) at one layer, batched together
        (sorted by length: little padding), resumed from the clean states of ``layer``."""
        sentences = [t for p in plans for t in p.sentences]
        if not sentences:
            return [[] for _ in plans]
        stored = [i for p in plans for i in p.stored]
        head = self.intervener.has_head
        runs = self.intervener.run(
            sentences,
            [e for p in plans for e in p.edits],
            read_positions=[r for p in plans for r in p.read] if head else None,
            resume=(layer, [clean[i].full[layer] for i in stored]) if layer > 0 else None,
            batch_size=batch_size,
        )
        out, at = [], 0
        for p in plans:
            out.append(runs[at : at + len(p.sentences)])
            at += len(p.sentences)
        return out

    def _finish(
        self,
        c: Contexts,
        plan: _EditPlan,
        runs: list[ForwardResult],
        clean: dict[int, _Clean],
        texts: dict[int, str],
        settings: EffectSettings,
    ) -> FactorEffect:
        """The measures of one (factor, layer) from its edited passes."""
        last = self.n_layers - 1
        head = self.intervener.has_head
        atom_norm = plan.atom_norm
        step = 3 if head else 2
        acc = _Accumulator(head=head)
        per_sentence: list[SentenceEffect] = []
        atom_last = self.model_atom(c.factor, last)
        for k, (idx, positions, alphas, rows) in enumerate(plan.used):
            ablated, controlled = runs[step * k], runs[step * k + 1]
            base = runs[step * k + 2] if head else clean[idx]
            x = base.states[last][rows] if head else base.last[rows]
            x_l = clean[idx].full[c.layer][positions]
            a_change, a_cos = _state_change(x, ablated.states[last][rows])
            c_change, c_cos = _state_change(x, controlled.states[last][rows])
            a_shift, a_emb = _pooled_change(base.pooled, ablated.pooled)
            c_shift, c_emb = _pooled_change(base.pooled, controlled.pooled)
            acc.add_tokens(alphas, alphas * atom_norm / np.maximum(_norms(x_l), 1e-12))
            acc.add_states(a_change, a_cos, c_change, c_cos)
            acc.add_sentence(a_shift, a_emb, c_shift, c_emb)
            if head:
                acc.add_output(base.logits, ablated.logits, controlled.logits)
                direct = self.intervener.head_logits(
                    np.concatenate([x, x - alphas[:, None] * atom_last[None, :]])
                )
                if direct is not None:
                    n = x.shape[0]
                    acc.add_direct(direct[:n], direct[n:])
            per_sentence.append(
                SentenceEffect(
                    sentence_idx=int(idx),
                    text=texts[idx],
                    n_tokens=int(alphas.size),
                    embedding_shift=a_shift,
                    control_embedding_shift=c_shift,
                    state_change=float(np.mean(a_change)),
                )
            )
        per_sentence.sort(key=lambda s: (-s.embedding_shift, s.sentence_idx))
        output_tokens: dict[str, dict[str, list[OutputToken]]] = {}
        if head and acc.n_tokens:
            output_tokens["ablation"] = self._top_tokens(acc.effect_sum / acc.n_tokens, settings)
            if acc.direct_sum is not None:
                output_tokens["direct"] = self._top_tokens(acc.direct_sum / acc.n_tokens, settings)
        ablation, control = acc.measures()
        return FactorEffect(
            dictionary_id=self.dictionary_id,
            factor=c.factor,
            layer=c.layer,
            output_kind=self.output_kind,
            n_sentences=len(plan.used),
            n_tokens=acc.n_tokens,
            mean_alpha=_mean(acc.alphas),
            edit_norm=_mean([a * atom_norm for a in acc.alphas]),
            edit_rel=_mean(acc.edit_rel),
            ablation=ablation,
            control=control,
            output_tokens=output_tokens,
            sentences=per_sentence,
            settings=settings.to_dict(),
            seconds=0.0,
        )

    def _top_tokens(
        self, effect: np.ndarray, settings: EffectSettings
    ) -> dict[str, list[OutputToken]]:
        k = min(settings.top_tokens, effect.size)
        # ties: the smaller vocabulary id first (a stable sort of the negated values)
        up = np.argsort(-effect, kind="stable")[:k]
        down = np.argsort(effect, kind="stable")[:k]
        out = {}
        for name, ids in (("promoted", up), ("suppressed", down)):
            words = self.intervener.token_text(ids.tolist())
            out[name] = [
                OutputToken(int(i), str(w), float(effect[i]))
                for i, w in zip(ids, words, strict=True)
            ]
        return out

    # ------------------------------------------------------------------ steering

    def steer(
        self,
        text: str,
        factor: int,
        layer: int,
        strength: float,
        *,
        positions: Sequence[int] | None = None,
        top: int = 8,
        top_predictions: int = 5,
    ) -> SteerResult:
        """Add ``strength * phi_c / scale[l]`` at ``layer`` to ``text``'s tokens.

        ``positions``: model-input positions to steer (``SteerToken.position``; the
        Analyze page's ``position``), default every stored token (every word). A
        negative ``strength`` removes the direction instead. Returns every layer's top
        ``top`` factors per token before and after, the steered factor's alpha, the
        sentence-embedding cosine and, with a head, the top ``top_predictions`` at the
        steered tokens.
        """
        factor, layer = self.check(factor, layer)
        text, strength = _steer_input(text, strength)
        with self._lock:
            (ts,) = self.tokenize([text])
            kept = ts.positions
            if positions is None:
                chosen = kept
            else:
                chosen = np.unique(np.asarray(list(positions), dtype=np.int64))
                outside = np.setdiff1d(chosen, kept)
                if chosen.size == 0 or outside.size:
                    raise InputError(
                        f"positions must be among the text's tokens {kept.tolist()}, "
                        f"not {list(positions)!r}"
                    )
            delta = np.tile(strength * self.model_atom(factor, layer), (chosen.size, 1))
            layers = list(range(self.n_layers))
            head = self.intervener.has_head
            read = [chosen] if head else None
            # two separate passes of the same shape: the layers below `layer` agree bit for bit
            (before,) = self.intervener.run([ts], layers=layers, read_positions=read)
            (after,) = self.intervener.run(
                [ts], [[Edit(layer, chosen, delta)]], layers=layers, read_positions=read
            )
            n_tok = kept.size
            stack = np.concatenate(
                [
                    np.concatenate([before.states[x] for x in layers]),
                    np.concatenate([after.states[x] for x in layers]),
                ]
            )
            tags = np.tile(np.repeat(np.arange(self.n_layers), n_tok), 2)
            codes = self.encoder.transform(stack, layers=tags).toarray()
        half = codes.shape[0] // 2
        tokens = _steer_tokens(ts, kept, set(chosen.tolist()))
        out_layers = [
            _steer_layer(
                x,
                codes[x * n_tok : (x + 1) * n_tok],
                codes[half + x * n_tok : half + (x + 1) * n_tok],
                before.states[x],
                after.states[x],
                factor,
                top,
            )
            for x in layers
        ]
        predictions = None
        if head and before.logits is not None and after.logits is not None:
            predictions = [
                Prediction(
                    position=int(p),
                    before=self._predictions(before.logits[j], top_predictions),
                    after=self._predictions(after.logits[j], top_predictions),
                )
                for j, p in enumerate(chosen.tolist())
            ]
        shift, _ = _pooled_change(before.pooled, after.pooled)
        return SteerResult(
            text=text,
            dictionary_id=self.dictionary_id,
            factor=factor,
            layer=layer,
            strength=strength,
            output_kind=self.output_kind,
            tokens=tokens,
            layers=out_layers,
            embedding_cosine=1.0 - shift,
            predictions=predictions,
        )

    def _predictions(self, logits: np.ndarray, k: int) -> list[tuple[str, float]]:
        logprobs = _log_softmax(logits)
        ids = np.argsort(-logprobs, kind="stable")[:k]
        words = self.intervener.token_text(ids.tolist())
        return [(str(w), float(np.exp(logprobs[i]))) for i, w in zip(ids, words, strict=True)]


# ----------------------------------------------------------------------------- math helpers


def _steer_input(text: Any, strength: Any) -> tuple[str, float]:
    """The text (NFC, stripped) and strength of a steering request, or one-line refusals."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("type some text to steer")
    if len(text) > MAX_STEER_CHARS:
        raise InputError(f"text is too long ({len(text)} characters; at most {MAX_STEER_CHARS})")
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise InputError(f"strength must be a number, not {strength!r}") from None
    if not math.isfinite(strength) or abs(strength) > MAX_STRENGTH:
        raise InputError(f"strength must be a number from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g}")
    return unicodedata.normalize("NFC", text.strip()), strength


def _steer_tokens(ts: TokenizedSentence, kept: np.ndarray, steered: set[int]) -> list[SteerToken]:
    tokens = []
    for position in kept.tolist():
        start, end = int(ts.char_start[position]), int(ts.char_end[position])
        tokens.append(
            SteerToken(
                position=int(position),
                piece=ts.pieces[position],
                word=ts.word_at(position),
                text=ts.text[start:end].strip() or ts.pieces[position],
                start=start,
                end=end,
                steered=position in steered,
            )
        )
    return tokens


def _steer_layer(
    x: int,
    rows_b: np.ndarray,
    rows_a: np.ndarray,
    state_b: np.ndarray,
    state_a: np.ndarray,
    factor: int,
    top: int,
) -> SteerLayer:
    """One layer's decomposition before and after, and how far each state turned."""
    top_b = [_top_factors(r, top) for r in rows_b]
    top_a = [_top_factors(r, top) for r in rows_a]
    _, cos = _state_change(state_b, state_a)
    return SteerLayer(
        layer=x,
        before=top_b,
        after=top_a,
        factor_before=[float(v) for v in rows_b[:, factor]],
        factor_after=[float(v) for v in rows_a[:, factor]],
        state_cosine=[float(v) for v in cos],
        changed=sum(
            [f for f, _ in b] != [f for f, _ in a] for b, a in zip(top_b, top_a, strict=True)
        ),
    )


def _norms(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(x, dtype=np.float64), axis=-1)


def _state_change(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``||y - x|| / ||x||`` and ``cos(x, y)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    nx, ny = _norms(x), _norms(y)
    change = _norms(y - x) / np.maximum(nx, 1e-12)
    cos = np.einsum("ij,ij->i", x, y) / np.maximum(nx * ny, 1e-12)
    return change, cos


def _pooled_change(p: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """``1 - cos(p, q)`` and ``||q - p|| / ||p||``."""
    change, cos = _state_change(p[None, :], q[None, :])
    return float(1.0 - cos[0]), float(change[0])


def _mean(values: Sequence[float] | np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else None


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of each row of logits (float64, stable)."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _top_factors(row: np.ndarray, top: int) -> list[tuple[int, float]]:
    order = np.argsort(-row, kind="stable")[:top]
    return [(int(f), float(row[f])) for f in order if row[f] > 0]


@dataclass
class _EditPlan:
    """One (factor, layer)'s edited passes, before they run."""

    atom_norm: float
    used: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    """Per sentence used: (sentence_idx, positions, alphas, rows among its kept tokens)."""
    sentences: list[TokenizedSentence] = field(default_factory=list)
    edits: list[list[Edit]] = field(default_factory=list)
    read: list[np.ndarray] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)
    """The sentence_idx of each pass (whose clean states it resumes from)."""


@dataclass(frozen=True)
class _Clean:
    """One sentence's clean pass, as the measures need it."""

    last: np.ndarray  # (n_kept, d): the last layer at the kept positions
    pooled: np.ndarray  # (d,)
    full: dict[int, np.ndarray]  # layer -> (n_positions, d)


class _CleanCache:
    """Clean passes kept between calls (least recently used out past ``max_bytes``),
    keyed by sentence text: the stage's chunks and the page's layers share sentences."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._base: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._full: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, text: str, layers: set[int]) -> _Clean | None:
        base = self._base.get(text)
        if base is None or any((text, x) not in self._full for x in layers):
            return None
        self._base.move_to_end(text)
        full = {}
        for x in layers:
            self._full.move_to_end((text, x))
            full[x] = self._full[(text, x)]
        return _Clean(base[0], base[1], full)

    def put(
        self, text: str, last: np.ndarray, pooled: np.ndarray, full: dict[int, np.ndarray]
    ) -> _Clean:
        if text in self._base:
            self._bytes -= sum(a.nbytes for a in self._base.pop(text))
        self._base[text] = (last, pooled)
        self._bytes += last.nbytes + pooled.nbytes
        for x, state in full.items():
            old = self._full.pop((text, x), None)
            if old is not None:
                self._bytes -= old.nbytes
            self._full[(text, x)] = state
            self._bytes += state.nbytes
        self._evict()
        return _Clean(last, pooled, dict(full))

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and (self._full or self._base):
            if self._full:
                _, state = self._full.popitem(last=False)
                self._bytes -= state.nbytes
            else:
                _, (last, pooled) = self._base.popitem(last=False)
                self._bytes -= last.nbytes + pooled.nbytes


class _Accumulator:
    """Sums of one factor's measures over its tokens and sentences."""

    def __init__(self, *, head: bool) -> None:
        self.head = head
        self.alphas: list[float] = []
        self.edit_rel: list[float] = []
        self.token = {k: [] for k in ("a_change", "a_cos", "c_change", "c_cos")}
        self.sentence = {k: [] for k in ("a_shift", "a_emb", "c_shift", "c_emb")}
        self.output = {k: [] for k in ("a_kl", "a_top", "c_kl", "c_top")}
        self.effect_sum: np.ndarray | None = None
        self.direct_sum: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.alphas)

    def add_tokens(self, alphas: np.ndarray, edit_rel: np.ndarray) -> None:
        self.alphas += [float(a) for a in alphas]
        self.edit_rel += [float(r) for r in edit_rel]

    def add_states(self, a_change, a_cos, c_change, c_cos) -> None:
        for key, values in zip(self.token, (a_change, a_cos, c_change, c_cos), strict=True):
            self.token[key] += [float(v) for v in values]

    def add_sentence(self, a_shift, a_emb, c_shift, c_emb) -> None:
        for key, value in zip(self.sentence, (a_shift, a_emb, c_shift, c_emb), strict=True):
            self.sentence[key].append(float(value))

    def add_output(self, clean: np.ndarray, ablated: np.ndarray, controlled: np.ndarray) -> None:
        """Logits at the edited tokens, shape (k, vocab): the clean pass's, the factor's
        removal's, the control's."""
        clean = clean.astype(np.float64)
        logp = _log_softmax(clean)
        top = np.argmax(clean, axis=1)
        p = np.exp(logp)
        rows = np.arange(clean.shape[0])
        for prefix, other in (("a", ablated), ("c", controlled)):
            other_logp = _log_softmax(other.astype(np.float64))
            self.output[f"{prefix}_kl"] += list((p * (logp - other_logp)).sum(axis=1))
            self.output[f"{prefix}_top"] += list(other_logp[rows, top] - logp[rows, top])
        diff = (clean - ablated.astype(np.float64)).sum(axis=0)
        self.effect_sum = diff if self.effect_sum is None else self.effect_sum + diff

    def add_direct(self, clean: np.ndarray, ablated: np.ndarray) -> None:
        """The head's logits on the clean last-layer states and with the atom removed."""
        diff = (clean.astype(np.float64) - ablated.astype(np.float64)).sum(axis=0)
        self.direct_sum = diff if self.direct_sum is None else self.direct_sum + diff

    def measures(self) -> tuple[Measures, Measures]:
        out = []
        for prefix in ("a", "c"):
            out.append(
                Measures(
                    state_change=_mean(self.token[f"{prefix}_change"]),
                    state_cosine=_mean(self.token[f"{prefix}_cos"]),
                    embedding_shift=_mean(self.sentence[f"{prefix}_shift"]),
                    embedding_change=_mean(self.sentence[f"{prefix}_emb"]),
                    output_kl=_mean(self.output[f"{prefix}_kl"]) if self.head else None,
                    top_logprob_change=_mean(self.output[f"{prefix}_top"]) if self.head else None,
                )
            )
        return out[0], out[1]


def _with(effect: FactorEffect, **changes: Any) -> FactorEffect:
    from dataclasses import replace

    return replace(effect, **changes)


# ----------------------------------------------------------------------------- contexts


def read_contexts(
    con: Any, dictionary_id: int, pairs: Sequence[tuple[int, int]], n_contexts: int
) -> tuple[list[Contexts], dict[int, str]]:
    """Each (factor, layer)'s :class:`Contexts` (in the order of ``pairs``) and the texts
    of every sentence they name, from the stored top contexts and codes."""
    data = ew.factor_contexts(con, dictionary_id, pairs, n_contexts)
    groups: dict[tuple[int, int], dict[int, tuple[list, list]]] = {}
    for f, layer, idx, pos, alpha in zip(
        data["factor"].tolist(),
        data["layer"].tolist(),
        data["sentence_idx"].tolist(),
        data["position"].tolist(),
        data["alpha"].tolist(),
        strict=True,
    ):
        per = groups.setdefault((int(f), int(layer)), {})
        positions, alphas = per.setdefault(int(idx), ([], []))
        positions.append(int(pos))
        alphas.append(float(alpha))
    order = {}
    for f, layer, rank, idx in zip(
        data["factor"].tolist(),
        data["layer"].tolist(),
        data["sentence_rank"].tolist(),
        data["sentence_idx"].tolist(),
        strict=True,
    ):
        order[(int(f), int(layer), int(idx))] = int(rank)
    items = []
    for f, layer in pairs:
        per = groups.get((int(f), int(layer)), {})
        idxs = sorted(per, key=lambda i, f=f, layer=layer: order[(int(f), int(layer), i)])
        items.append(
            Contexts(
                factor=int(f),
                layer=int(layer),
                sentence_idx=tuple(idxs),
                positions=tuple(np.asarray(per[i][0], dtype=np.int64) for i in idxs),
                alphas=tuple(np.asarray(per[i][1], dtype=np.float32) for i in idxs),
            )
        )
    texts = ew.sentence_texts(con, [i for c in items for i in c.sentence_idx])
    return items, texts


# ----------------------------------------------------------------------------- on demand


def measure_factor(
    con: Any,
    model: EffectModel,
    factor: int,
    layer: int,
    settings: EffectSettings | None = None,
    *,
    source: str = "on-demand",
) -> FactorEffect:
    """The effect of one (factor, layer) of ``model``'s dictionary, from the stored
    contexts of ``con`` (any connection on the run's database)."""
    settings = settings or EffectSettings()
    factor, layer = model.check(factor, layer)
    (item,), texts = read_contexts(con, model.dictionary_id, [(factor, layer)], settings.n_contexts)
    (effect,) = model.measure([item], texts, settings, source=source)
    return effect


def effect_for_page(
    db_path: str | Path,
    model: EffectModel,
    factor: int,
    layer: int,
    settings: EffectSettings | None = None,
    *,
    store_result: bool = True,
) -> dict[str, Any]:
    """The factor page's effect card: the stored effect of (factor, layer) when there is
    one with these settings, else measured now and stored (``source = 'on-demand'``).

    Returns :meth:`FactorEffect.to_dict`'s shape plus ``cached`` (True when read).
    """
    settings = settings or EffectSettings()
    factor, layer = model.check(factor, layer)
    reader = queries.WarehouseReader(db_path)
    with reader.connect() as con:
        hit = ew.factor_effect(con, model.dictionary_id, factor, layer)
        if hit is not None and hit["settings"] == settings.to_dict():
            return {**hit, "cached": True}
        effect = measure_factor(con, model, factor, layer, settings)
    if store_result:
        ew.put_effect(db_path, model.dictionary_id, effect_rows([effect]))
    return {**effect.to_dict(), "cached": False}


# ----------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class EffectsSummary:
    dictionary_id: int
    output_kind: str | None
    n_factors: int
    """Factors planned (every factor that fires, or the sample)."""
    measured: int
    """Factors measured by this run (0: nothing to do)."""
    chunks_done: int
    chunks_reused: int
    seconds: float
    measure: str | None = None
    effect_median: float | None = None
    control_median: float | None = None
    silent: int = 0
    """Factors of the dictionary that never fire (no peak layer: not measured)."""
    sample: int | None = None

    def line(self) -> str:
        if self.measured == 0:
            return (
                f"effects: dictionary {self.dictionary_id}'s {self.n_factors:,} factors are "
                "measured with these settings; nothing to do"
            )
        kind = {
            "sentence-embedding": "sentence embedding (no language-model head)",
            "masked-lm": "masked-LM head",
            "causal-lm": "causal-LM head",
        }.get(self.output_kind or "", self.output_kind)
        what = "a sample of " if self.sample is not None else ""
        line = (
            f"effects: dictionary {self.dictionary_id}, {what}{self.n_factors:,} factors "
            f"at their peak layer, {kind}, in {self.seconds:.1f} s"
        )
        if self.chunks_reused:
            line += f" ({self.chunks_reused} chunks already done)"
        if self.effect_median is not None and self.control_median is not None:
            name = (
                "1 - cos of the sentence embedding"
                if self.measure == "embedding_shift"
                else "KL of the output"
            )
            line += (
                f"; removing a factor moves the {name} by {self.effect_median:.4g} (median), "
                f"a random direction of the same norm by {self.control_median:.4g}"
            )
        if self.silent:
            line += f"; {self.silent:,} factors never fire"
        return line


def _plan(
    targets: list[tuple[int, int, str]], n_factors: int, config: EffectsConfig
) -> list[list[tuple[int, int]]]:
    """The chunks of (factor, peak layer): the sample (the first ``max_factors`` of a
    seeded random order of the factors; all of them by default), chunked by peak layer
    (chunks at one layer share sentences, whose clean passes are then reused)."""
    rank = np.empty(n_factors, dtype=np.int64)
    rank[np.random.default_rng(config.seed).permutation(n_factors)] = np.arange(n_factors)
    ordered = sorted(((f, layer) for f, layer, _ in targets), key=lambda t: rank[t[0]])
    if config.max_factors is not None:
        ordered = ordered[: config.max_factors]
    ordered.sort(key=lambda t: (t[1], rank[t[0]]))
    size = config.chunk_factors
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _chunk_settings(config: EffectsConfig, chunk: list[tuple[int, int]]) -> dict[str, Any]:
    """What a finished chunk must match to be reused: the settings and its very
    (factor, layer) pairs (another sample, or peaks moved by a new encode, differ)."""
    pairs = ",".join(f"{f}:{layer}" for f, layer in chunk)
    digest = hashlib.sha256(pairs.encode()).hexdigest()[:16]
    return {**config.chunk_settings(), "pairs": digest}


def _todo(
    con: Any, target: int, chunks: list[list[tuple[int, int]]], config: EffectsConfig
) -> list[int]:
    done = {} if config.force else ew.finished_chunks(con, target)
    return [i for i, chunk in enumerate(chunks) if done.get(i) != _chunk_settings(config, chunk)]


def _check_target(con: Any, db_path: Path, config: EffectsConfig) -> int:
    target = (
        queries.active_dictionary_id(con) if config.dictionary_id is None else config.dictionary_id
    )
    info = ew.effects_dictionary(con, target)
    if info is None:
        raise InputError(
            f"dictionary {target} does not exist in {db_path} (see `factorscope status`)"
        )
    if info["status"] != "encoded" or not info["summarised"]:
        raise InputError(
            f"dictionary {target} is not encoded: run `factorscope encode --dictionary "
            f"{target}` first"
        )
    return int(target)


def _preflight(db_path: Path, config: EffectsConfig) -> EffectsSummary | None:
    """Check the published file before any staging copy is made (a wrong dictionary
    leaves nothing behind); the summary when every chunk is already done there."""
    if wip_path(db_path).exists() or not db_path.exists():
        return None  # a staging copy to resume (checked there), or no database yet
    con = connect(db_path, read_only=True)
    try:
        run = store.require_run(con)
        if run_shard(run) is not None:
            raise InputError(
                f"{db_path} holds one shard of a run: measure effects on the merged run"
            )
        target = _check_target(con, db_path, config)
        if config.force or not ew.has_effect_tables(con):
            return None
        targets = ew.effect_targets(con, target)
        n_factors = int(ew.effects_dictionary(con, target)["n_factors"])
        chunks = _plan(targets, n_factors, config)
        if _todo(con, target, chunks, config):
            return None
        return EffectsSummary(target, None, sum(map(len, chunks)), 0, 0, len(chunks), 0.0)
    finally:
        con.close()


def run_effects(db_path: str | Path, config: EffectsConfig | None = None) -> EffectsSummary:
    """Measure every factor (or a sample) of a dictionary at its peak layer; resumable
    per chunk of factors, published when every chunk is done."""
    config = config or EffectsConfig()
    db_path = Path(db_path)
    check_db_path_writable(db_path)
    done = _preflight(db_path, config)
    if done is not None:
        return done
    started = time.perf_counter()
    settings = config.settings()
    with staged_database(db_path) as con:
        run = store.require_run(con)
        if run_shard(run) is not None:
            raise InputError(
                f"{db_path} holds one shard of a run: measure effects on the merged run"
            )
        target = _check_target(con, db_path, config)
        targets = ew.effect_targets(con, target)
        n_factors = int(ew.effects_dictionary(con, target)["n_factors"])
        chunks = _plan(targets, n_factors, config)
        todo = _todo(con, target, chunks, config)
        measured = 0
        kind = None
        if todo:
            coder = RunCoder.from_connection(
                con, dictionary_id=target, device=config.device, threads=config.threads
            )
            model = EffectModel.from_coder(coder)
            kind = model.output_kind
            total = sum(len(chunks[i]) for i in todo)
            with progress_bar("effects", total=total, unit="factors") as bar:
                task = bar.task_ids[0]
                for i in todo:
                    t0 = time.perf_counter()
                    items, texts = read_contexts(con, target, chunks[i], settings.n_contexts)
                    effects = model.measure(items, texts, settings, batch_size=config.batch_size)
                    ew.write_effects_chunk(
                        con,
                        target,
                        i,
                        effect_rows(effects),
                        _chunk_settings(config, chunks[i]),
                        time.perf_counter() - t0,
                    )
                    crashpoint("effects.chunk")
                    measured += len(chunks[i])
                    rate = len(chunks[i]) / max(time.perf_counter() - t0, 1e-9)
                    bar.update(task, advance=len(chunks[i]), rate=rate)
        planned = {f for chunk in chunks for f, _ in chunk}
        values = ew.effect_values(con, target)
        values = values.filter(values["factor"].is_in(sorted(planned)))
        measure = None
        if kind is not None:
            measure = ew.HEADLINE[kind]
        effect_median = control_median = None
        if values.height:
            effect_median = _median(values["effect"])
            control_median = _median(values["control"])
    return EffectsSummary(
        dictionary_id=target,
        output_kind=kind,
        n_factors=len(planned),
        measured=measured,
        chunks_done=len(todo),
        chunks_reused=len(chunks) - len(todo),
        seconds=time.perf_counter() - started,
        measure=measure,
        effect_median=effect_median,
        control_median=control_median,
        silent=n_factors - len(targets),
        sample=config.max_factors,
    )


def _median(column: Any) -> float | None:
    values = np.asarray([v for v in column.to_list() if v is not None], dtype=np.float64)
    return float(np.median(values)) if values.size else None
