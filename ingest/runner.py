"""Running sentences through the model and keeping every layer's hidden states."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factorscope.ingest.model import LoadedModel
from factorscope.limits import MAX_POSITIONS


@dataclass(frozen=True)
class TokenizedSentence:
    """What the tokenizer says about one sentence, before the model runs.

    ``keep`` marks the positions stored as contexts (special tokens excluded by default,
    as in the reference). Word spans come from the fast tokenizer's word ids and
    character offsets, so a piece like ``##ing`` knows its whole word.
    """

    text: str
    input_ids: np.ndarray  # (T,) int64
    keep: np.ndarray  # (T,) bool
    pieces: list[str]
    word_index: np.ndarray  # (T,) int32, -1 for special tokens
    char_start: np.ndarray  # (T,) int32
    char_end: np.ndarray
    word_start: np.ndarray
    word_end: np.ndarray

    @property
    def n_positions(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def positions(self) -> np.ndarray:
        return np.flatnonzero(self.keep)

    def word_at(self, position: int) -> str:
        return self.text[self.word_start[position] : self.word_end[position]]


def tokenize(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    keep_special: bool = False,
) -> list[TokenizedSentence]:
    """Tokenize with offsets and word ids; truncates at ``max_length`` pieces."""
    if max_length > MAX_POSITIONS:
        raise ValueError(f"max_length must be at most {MAX_POSITIONS}")
    tok = loaded.tokenizer
    encoded = tok(
        list(texts),
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    out = []
    for i, text in enumerate(texts):
        ids = np.asarray(encoded["input_ids"][i], dtype=np.int64)
        special = np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
        offsets = np.asarray(encoded["offset_mapping"][i], dtype=np.int32).reshape(-1, 2)
        words = encoded.word_ids(i)
        word_index = np.array([-1 if w is None else w for w in words], dtype=np.int32)
        word_start = offsets[:, 0].copy()
        word_end = offsets[:, 1].copy()
        for w in np.unique(word_index[word_index >= 0]):
            members = word_index == w
            word_start[members] = offsets[members, 0].min()
            word_end[members] = offsets[members, 1].max()
        keep = np.ones_like(special) if keep_special else ~special
        out.append(
            TokenizedSentence(
                text=text,
                input_ids=ids,
                keep=keep,
                pieces=tok.convert_ids_to_tokens(ids.tolist()),
                word_index=word_index,
                char_start=offsets[:, 0].copy(),
                char_end=offsets[:, 1].copy(),
                word_start=word_start,
                word_end=word_end,
            )
        )
    return out


def hidden_states(
    loaded: LoadedModel,
    sentences: Sequence[TokenizedSentence],
    *,
    batch_size: int = 32,
) -> list[np.ndarray]:
    """Every layer's hidden states of the kept positions of each sentence.

    Returns one float32 array of shape (n_layers, n_kept, hidden_size) per sentence, in
    input order. Batches are formed over length-sorted sentences so padding stays small.
    """
    import torch

    pad_id = loaded.tokenizer.pad_token_id or 0
    order = np.argsort([s.n_positions for s in sentences], kind="stable")
    results: list[np.ndarray | None] = [None] * len(sentences)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [int(i) for i in order[start : start + batch_size]]
            width = max(sentences[i].n_positions for i in batch)
            ids = np.full((len(batch), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = sentences[i].n_positions
                ids[row, :n] = sentences[i].input_ids
                mask[row, :n] = 1
            output = loaded.model(
                input_ids=torch.from_numpy(ids).to(loaded.device),
                attention_mask=torch.from_numpy(mask).to(loaded.device),
                output_hidden_states=True,
            )
            stacked = torch.stack(output.hidden_states, dim=1).float().cpu().numpy()
            for row, i in enumerate(batch):
                results[i] = np.ascontiguousarray(stacked[row][:, sentences[i].positions, :])
    return results  # type: ignore[return-value]
