"""Live analysis: any text through the run's model and the active dictionary.

Used by the app's "Analyze a sentence" page and by LIME. It applies exactly the steps
`encode` applies (same tokenizer settings, same preprocessing, same solver), so a
sentence from the corpus gets the codes stored for it.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from factorscope.errors import FactorscopeError, InputError
from factorscope.ingest.model import LoadedModel
from factorscope.ingest.runner import MAX_POSITIONS, TokenizedSentence, hidden_states, tokenize
from factorscope.saliency import Target, Word
from factorscope.sparse import SparseEncoder
from factorscope.stages.effects import EffectModel, SteerResult
from factorscope.stages.live import RunCoder
from factorscope.warehouse.queries import WarehouseReader

MAX_TEXT_CHARS = 2000


@dataclass
class LiveAnalyzer:
    loaded: LoadedModel
    encoder: SparseEncoder
    dictionary_id: int
    max_length: int
    keep_special: bool

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # torch and SPAMS calls from Dash's threads, one at a time
        self._effects: EffectModel | None = None
        self._effects_lock = threading.Lock()

    @classmethod
    def from_db(
        cls, db_path: str | Path, *, dictionary_id: int | None = None, device: str | None = None
    ) -> LiveAnalyzer:
        # Through the app's shared reader: one connection configuration per file and
        # process, whichever page opened the file first.
        with WarehouseReader(db_path).connect() as con:
            coder = RunCoder.from_connection(con, dictionary_id=dictionary_id)
        return cls(
            loaded=coder.loaded,
            encoder=coder.encoder,
            dictionary_id=coder.dictionary_id,
            max_length=coder.max_length,
            keep_special=coder.keep_special,
        )

    @property
    def n_layers(self) -> int:
        return self.loaded.n_layers

    @property
    def n_factors(self) -> int:
        return int(self.encoder.components_.shape[0])

    def effect_model(self) -> EffectModel:
        """The effects of this analyzer's dictionary (ablation, steering): an
        :class:`~factorscope.stages.effects.EffectModel` on the same loaded model, built
        on first use and kept. It shares this analyzer's lock, so its edited passes (which
        hook the model's modules) and the live analysis never run on the model at once.
        """
        if self._effects is None:
            # from_coder takes this analyzer's lock itself around its one model pass (the
            # check of its hook points); this one only keeps two threads from building it
            with self._effects_lock:
                if self._effects is None:
                    self._effects = EffectModel.from_coder(self, with_head=True)
        return self._effects

    def steer(
        self, text: str, factor: int, layer: int, strength: float, **kwargs: Any
    ) -> SteerResult:
        """Add ``strength`` times ``factor``'s atom at ``layer`` to ``text``'s tokens and
        decompose every layer before and after (:meth:`EffectModel.steer`)."""
        return self.effect_model().steer(text, factor, layer, strength, **kwargs)

    def _check(self, text: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise InputError("type some text to analyze")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"text is too long ({len(text)} characters; at most {MAX_TEXT_CHARS})")
        return text.strip()

    def _codes(self, texts: Sequence[str]):
        tokenized = tokenize(
            self.loaded, list(texts), max_length=self.max_length, keep_special=self.keep_special
        )
        states = hidden_states(self.loaded, tokenized)
        return tokenized, states

    def decompose(self, text: str, *, top: int = 8) -> list[dict]:
        """Per stored token: word, piece, position and, per layer, its top factors by alpha.

        ``text`` is the piece as written in the sentence: its character span ``start`` to
        ``end``, without surrounding spaces; ``left`` for BERT's ``left`` and for byte-level
        BPE's ``Ġleft`` alike, ``ing`` for ``##ing``. Special tokens have an empty span;
        their text is the piece.
        """
        text = self._check(text)
        with self._lock:
            (ts,), (st,) = self._codes([text])
            n_layers, n_tok, dim = st.shape
            X = st.reshape(n_layers * n_tok, dim)
            layers = np.repeat(np.arange(n_layers), n_tok)
            codes = self.encoder.transform(X, layers=layers).toarray()
        out = []
        for t, position in enumerate(ts.positions.tolist()):
            per_layer = []
            for layer in range(n_layers):
                row = codes[layer * n_tok + t]
                order = np.argsort(-row)[:top]
                per_layer.append(
                    {
                        "layer": layer,
                        "factors": [(int(f), float(row[f])) for f in order if row[f] > 0],
                    }
                )
            start, end = int(ts.char_start[position]), int(ts.char_end[position])
            out.append(
                {
                    "word": ts.word_at(position),
                    "piece": ts.pieces[position],
                    "text": ts.text[start:end].strip() or ts.pieces[position],
                    "start": start,
                    "end": end,
                    "position": position,
                    "word_index": int(ts.word_index[position]),
                    "layers": per_layer,
                }
            )
        return out

    def words(self, text: str) -> list[Word]:
        """The words of ``text`` the model reads, as its fast tokenizer splits them.

        Word ``i`` here is the tokenizer's ``word_index`` ``i`` (the one stored for corpus
        sentences): its character span comes from the pieces' offsets and its pieces are
        the tokenizer's. Words past the run's ``max_length`` cut are left out. The text is
        not stripped, so the offsets index ``text`` itself.
        """
        if not isinstance(text, str):
            raise InputError("LIME needs a sentence of text")
        with self._lock:  # a fast tokenizer with truncation is not safe across threads
            (seen,) = tokenize(self.loaded, [text], max_length=self.max_length)
            full = seen
            if seen.n_positions >= self.max_length:  # cut: the last word may be cut in two
                (full,) = tokenize(self.loaded, [text], max_length=MAX_POSITIONS)
        return _words_of(seen, full)

    def alpha_for(
        self, texts: Sequence[str], targets: Sequence[Target], layer: int, factor: int
    ) -> np.ndarray:
        """alpha of ``factor`` at ``layer`` at one word piece of each text.

        The LIME "classifier". ``targets[i]`` names piece ``piece`` of the word whose
        character span in ``texts[i]`` is ``start:end`` (a span, not a word index, so a
        word found at another index than expected is never read by mistake). A target
        the model does not read, for instance one cut off at ``max_length``, is an
        :class:`InputError`, never a 0.
        """
        if not 0 <= layer < self.n_layers:
            raise InputError(f"layer {layer} does not exist (0..{self.n_layers - 1})")
        if not 0 <= factor < self.n_factors:
            raise InputError(f"factor {factor} does not exist (0..{self.n_factors - 1})")
        texts = list(texts)
        targets = [t if isinstance(t, Target) else Target(*t) for t in targets]
        if len(texts) != len(targets):
            raise InputError(f"{len(texts)} texts but {len(targets)} targets")
        with self._lock:
            tokenized, states = self._codes(texts)
        rows = [
            st[layer, _target_row(ts, target, self.max_length)]
            for ts, st, target in zip(tokenized, states, targets, strict=True)
        ]
        with self._lock:
            alpha = self.encoder.transform(np.stack(rows), layers=np.full(len(rows), layer))
        return alpha[:, factor].toarray().ravel().astype(np.float64)


def _words_of(seen: TokenizedSentence, full: TokenizedSentence) -> list[Word]:
    """The words with pieces in ``seen``; their spans from ``full`` (the same text uncut)."""
    ids = seen.word_index
    numbers = np.unique(ids[ids >= 0])
    if not np.array_equal(numbers, np.arange(numbers.size)):
        raise FactorscopeError(f"the tokenizer numbered the words of {seen.text!r} with gaps")
    text, out = seen.text, []
    starts = [*sorted({int(x) for x in full.word_start[full.word_index >= 0]}), len(text)]
    for w in numbers.tolist():
        members = np.flatnonzero(ids == w)
        whole = np.flatnonzero(full.word_index == w)[0]
        start, end = int(full.word_start[whole]), int(full.word_end[whole])
        # combining marks the tokenizer strips ("e" + U+0301) belong to the word they
        # follow: masked with it, drawn with it
        limit = starts[starts.index(start) + 1]
        while end < limit and unicodedata.combining(text[end]):
            end += 1
        out.append(Word(start, end, tuple(seen.pieces[m] for m in members.tolist())))
    return out


def _target_row(ts: TokenizedSentence, target: Target, max_length: int) -> int:
    """Index among the kept positions (rows of the hidden states) of ``target``'s piece."""
    kept = ts.positions
    # by its first character: words never overlap, and the end of a word cut at
    # max_length moves when masking shortens the sentence
    hits = np.flatnonzero((ts.word_index[kept] >= 0) & (ts.word_start[kept] == target.start))
    word = ts.text[target.start : target.end]
    if hits.size == 0:
        raise InputError(
            f"the target word {word!r} (characters {target.start}..{target.end}) is not "
            f"among the tokens the model reads of {ts.text!r}: a sentence is cut at "
            f"max_length {max_length} pieces"
        )
    if np.unique(ts.word_index[kept][hits]).size > 1:
        raise FactorscopeError(f"several words of {ts.text!r} span characters of {word!r}")
    if not 0 <= target.piece < hits.size:
        raise InputError(
            f"the target word {word!r} has {hits.size} piece(s) the model reads, "
            f"not a piece {target.piece} (cut at max_length {max_length}?)"
        )
    return int(hits[target.piece])
