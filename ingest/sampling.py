"""A seeded sample of token x layer vectors that survives interruption.

A classic reservoir sample depends on the order items arrive and on state kept in
memory, so a killed ingest could not reproduce it. Instead every (token_id, layer)
item gets a pseudo-random 64-bit key from a hash of (seed, token_id, layer), and the
sample is the ``size`` items with the smallest keys ("bottom-k" sampling): uniform
without replacement like a reservoir, but a pure function of the items, so any chunk
can decide on its own which of its vectors to keep.
"""

from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def sample_keys(token_ids: np.ndarray, layers: np.ndarray, seed: int) -> np.ndarray:
    """The 64-bit sampling key of each (token_id, layer) item."""
    token_ids = np.asarray(token_ids, dtype=np.uint64)
    layers = np.asarray(layers, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = _splitmix64(token_ids * np.uint64(64) + layers)
        return _splitmix64(mixed ^ _splitmix64(np.uint64(seed) + np.zeros(1, np.uint64)))


def sample_threshold(token_ids: np.ndarray, n_layers: int, size: int | None, seed: int) -> int:
    """The largest key that is still in the sample (all items kept when size is None)."""
    token_ids = np.asarray(token_ids, dtype=np.uint64)
    n_items = token_ids.size * n_layers
    if size is None or size >= n_items:
        return int(_MASK)
    if size <= 0:
        return -1
    tokens = np.repeat(token_ids, n_layers)
    layers = np.tile(np.arange(n_layers, dtype=np.uint64), token_ids.size)
    keys = sample_keys(tokens, layers, seed)
    return int(np.partition(keys, size - 1)[size - 1])


def in_sample(token_ids: np.ndarray, layers: np.ndarray, seed: int, threshold: int) -> np.ndarray:
    """Boolean mask of the items whose key is at most ``threshold``."""
    if threshold < 0:
        return np.zeros(np.broadcast(token_ids, layers).shape, dtype=bool)
    return sample_keys(token_ids, layers, seed) <= np.uint64(threshold)
