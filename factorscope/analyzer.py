"""Live analysis: any text through the run's model and the active dictionary.

Used by the app's "Analyze a sentence" page and by LIME. It applies exactly the steps
`encode` applies (same tokenizer settings, same preprocessing, same solver), so a
sentence from the corpus gets the codes stored for it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factorscope.encode import load_run_model
from factorscope.errors import InputError
from factorscope.ingest.model import LoadedModel
from factorscope.ingest.runner import hidden_states, tokenize
from factorscope.learn import load_learner
from factorscope.sparse import SparseEncoder
from factorscope.warehouse import store
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

    @classmethod
    def from_db(cls, db_path: str | Path, *, device: str | None = None) -> LiveAnalyzer:
        # Through the app's shared reader: one connection configuration per file and
        # process, whichever page opened the file first.
        with WarehouseReader(db_path).connect() as con:
            run = store.require_run(con)
            # the dictionary whose codes the app shows, not a newer one still unencoded
            encoded = store.latest_dictionary_id(con, status=("encoded",))
            record = store.load_dictionary(con, encoded)
        loaded = load_run_model(run)
        encoder = SparseEncoder(load_learner(record), n_jobs=1)
        return cls(
            loaded=loaded,
            encoder=encoder,
            dictionary_id=record.dictionary_id,
            max_length=int(run["config"]["max_length"]),
            keep_special=bool(run["config"]["keep_special"]),
        )

    @property
    def n_layers(self) -> int:
        return self.loaded.n_layers

    @property
    def n_factors(self) -> int:
        return int(self.encoder.components_.shape[0])

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
            codes = self.encoder.transform(X, layers).toarray()
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

    def alpha_for(
        self, texts: Sequence[str], word_index: int, layer: int, factor: int
    ) -> np.ndarray:
        """alpha of ``factor`` at the first piece of word ``word_index`` in each text.

        The LIME "classifier": texts are perturbed copies of one sentence in which words
        are replaced by [UNK], so word indices stay put while pieces move.
        """
        if not 0 <= layer < self.n_layers:
            raise InputError(f"layer {layer} does not exist (0..{self.n_layers - 1})")
        if not 0 <= factor < self.n_factors:
            raise InputError(f"factor {factor} does not exist (0..{self.n_factors - 1})")
        with self._lock:
            tokenized, states = self._codes(texts)
            rows, missing = [], []
            for i, (ts, st) in enumerate(zip(tokenized, states, strict=True)):
                kept = ts.positions
                hits = np.flatnonzero(ts.word_index[kept] == word_index)
                if hits.size == 0:
                    missing.append(i)
                    rows.append(np.zeros(st.shape[-1], dtype=np.float32))
                else:
                    rows.append(st[layer, hits[0]])
            X = np.stack(rows)
            alpha = self.encoder.transform(X, np.full(len(rows), layer))[:, factor].toarray()
        alpha = alpha.ravel().astype(np.float64)
        alpha[missing] = 0.0
        return alpha
