"""Shared fixtures: a tiny random BERT, small corpora, and real pipeline databases.

The tiny BERT is built from a ``BertConfig`` and saved next to the packaged MiniLM
tokenizer, so every test runs the real ``from_pretrained`` path in a fraction of the
packaged model's time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["FACTORSCOPE_PROGRESS"] = "0"


def pytest_sessionstart(session: pytest.Session) -> None:
    """``FACTORSCOPE_TORCH_THREADS=N``: torch on N threads in this process (.ci/run uses 1).

    Set OMP_NUM_THREADS / MKL_NUM_THREADS too, before pytest starts, for BLAS and SPAMS;
    subprocesses that a test starts inherit those, and take ``--threads`` for torch.
    """
    threads = os.environ.get("FACTORSCOPE_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


SENTENCES = [
    "He left the bank after the meeting.",
    "She turned left at the old church.",
    "They play football in the park every Sunday.",
    "The river bank was covered in snow.",
    "Please leave the door open when you go.",
    "The right answer was hidden in the book.",
    "We watched a play about a lonely king.",
    "My left hand is weaker than my right hand.",
    "The committee will meet again next Tuesday.",
    "A cup of hot tea is what I need now.",
    "Dogs bark loudly when strangers walk by.",
    "He thinks about the meaning of life often.",
]


def write_tiny_bert(out: Path) -> Path:
    """Save a 2-layer, 32-dim random BERT (seed 0) with the packaged MiniLM tokenizer to ``out``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from factorscope.ingest.model import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-dim random BERT with the packaged MiniLM tokenizer."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def sentence_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


TINY_FACTORS = 48


@pytest.fixture(scope="session")
def tiny_pipeline_db(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, sentence_corpus: Path
) -> Path:
    """A real database made by the real pipeline (ingest -> learn -> encode) on a tiny BERT.

    Treat it as read-only; copy it (``copy_db``) before writing.
    """
    from factorscope.ingest.corpus import CorpusConfig
    from factorscope.stages.encode import run_encode
    from factorscope.stages.ingest import IngestConfig, run_ingest
    from factorscope.stages.learn import LearnConfig, run_learn

    db = tmp_path_factory.mktemp("pipeline") / "tiny.duckdb"
    run_ingest(
        db,
        IngestConfig(
            corpus=CorpusConfig(source=str(sentence_corpus), split="lines", max_sentences=None),
            model=str(tiny_model_dir),
            chunk_size=4,
            sample_size=None,
        ),
    )
    run_learn(db, LearnConfig(n_factors=TINY_FACTORS, lambda1=0.05, seed=0))
    run_encode(db)
    return db


def tiny_run_args(sentence_corpus: Path, tiny_model_dir: Path) -> list[str]:
    """The ingest flags the ``tiny_pipeline_db`` fixture was built with."""
    return [
        "--corpus",
        str(sentence_corpus),
        "--split",
        "lines",
        "--max-sentences",
        "all",
        "--model",
        str(tiny_model_dir),
        "--chunk-size",
        "4",
        "--sample-size",
        "all",
    ]


def copy_db(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    return dst


def write_random_corpus(path: Path, *, n_sentences: int, seed: int) -> Path:
    """A corpus of distinct random sentences, big enough to kill a run half-way."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = [
        "the",
        "a",
        "cat",
        "dog",
        "left",
        "right",
        "bank",
        "river",
        "play",
        "game",
        "sun",
        "moon",
        "tea",
        "cup",
    ]
    lines = (
        " ".join(rng.choice(words, size=int(rng.integers(6, 20)))) + f" {i}."
        for i in range(n_sentences)
    )
    path.write_text("\n".join(lines), "utf-8")
    return path
