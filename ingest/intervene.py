"""Running the real model with an edited hidden state (ablation and steering).

An :class:`Edit` adds a vector to the hidden state of layer ``l`` at chosen positions of
one sentence; the model then runs its remaining layers on the edited state. The edit is a
forward hook on the module whose output *is* hidden state ``l`` (what
``output_hidden_states`` reports): the embeddings for ``l = 0`` and encoder block
``l - 1`` otherwise in a BERT-like model; the embedding dropout, block ``l - 1``, and the
final LayerNorm for the last layer in a GPT-2-like one. The modules are found by layout
and then *checked* on a short input (each hooked module's output must equal the model's
own hidden state of that layer), so a model whose layout differs is refused in one line
instead of being edited in the wrong place.

What comes back (:class:`ForwardResult`) is what the effect measures need: the states of
chosen layers at the sentence's kept positions, the pooled sentence embedding (the mean
of the last layer over every attended position, special tokens included, as
sentence-transformers' ``Pooling(mean)`` computes it for MiniLM), and, when the model has
a language-model head, the logits at chosen positions.

Which outputs exist is :attr:`Intervener.output_kind`: ``"sentence-embedding"`` for an
encoder without a head (the default MiniLM: ``architectures = ["BertModel"]``),
``"masked-lm"`` or ``"causal-lm"`` when the run's model folder holds a head
(``BertForMaskedLM``, ``GPT2LMHeadModel``, ...), loaded with
``AutoModelForMaskedLM`` / ``AutoModelForCausalLM`` from the same files (never
downloaded unless ``FACTORSCOPE_ALLOW_DOWNLOAD=1``, as :func:`load_model`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from factorscope.errors import ModelLoadError
from factorscope.ingest.model import LoadedModel
from factorscope.ingest.runner import TokenizedSentence

log = logging.getLogger(__name__)

OutputKind = Literal["sentence-embedding", "masked-lm", "causal-lm"]
OUTPUT_KINDS: tuple[str, ...] = ("sentence-embedding", "masked-lm", "causal-lm")

_MASKED_SUFFIXES = ("ForMaskedLM", "ForPreTraining")
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def output_kind_of(config: Any) -> OutputKind:
    """What the model folder's ``config.architectures`` says its outputs are."""
    names = [str(a) for a in (getattr(config, "architectures", None) or [])]
    if any(a.endswith(_MASKED_SUFFIXES) for a in names):
        return "masked-lm"
    if any(a.endswith(_CAUSAL_SUFFIXES) for a in names):
        return "causal-lm"
    return "sentence-embedding"


@dataclass(frozen=True)
class Edit:
    """Add ``delta[j]`` to hidden state ``layer`` at input position ``positions[j]``."""

    layer: int
    positions: np.ndarray  # (k,) int, positions in the model input (0 = [CLS] for BERT)
    delta: np.ndarray  # (k, hidden_size) float32, in the model's own space


@dataclass(frozen=True)
class ForwardResult:
    """One sentence's forward pass (edited or not).

    ``states[l]``: hidden state ``l`` at the sentence's kept positions, shape
    ``(n_kept, hidden_size)``, for every layer asked for (and ``full[l]`` at every
    position, for the layers of ``keep_full``); ``pooled``: the mean of the
    last layer over every attended position, shape ``(hidden_size,)``; ``logits``: the
    head's logits at the positions asked for, shape ``(k, vocab_size)``, or
    None without a head.
    """

    states: dict[int, np.ndarray]
    pooled: np.ndarray
    logits: np.ndarray | None = None
    full: dict[int, np.ndarray] = field(default_factory=dict)
    """Layers asked for with ``keep_full``: the state at every input position,
    shape ``(n_positions, hidden_size)``."""


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, value: Any) -> Any:
    if isinstance(output, tuple):
        return (value, *output[1:])
    return value


def _layout(model: Any) -> tuple[str, list[Any]]:
    """(layout name, the module whose output is hidden state l, for each l)."""
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    encoder = getattr(base, "encoder", None)
    blocks = getattr(encoder, "layer", None)
    if embeddings is not None and blocks is not None:
        return "bert", [embeddings, *blocks]
    blocks = getattr(base, "h", None)
    drop, ln_f = getattr(base, "drop", None), getattr(base, "ln_f", None)
    if blocks is not None and drop is not None and ln_f is not None:
        # GPT-2: hidden_states = [embeddings after dropout, blocks 0..L-2, ln_f(block L-1)]
        return "gpt2", [drop, *list(blocks)[:-1], ln_f]
    kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise ModelLoadError(
        f"editing hidden states supports BERT-like and GPT-2-like models; model type "
        f"{kind!r} has neither layout (embeddings + encoder.layer, or drop + h + ln_f)"
    )


def _head_module(model: Any) -> Any | None:
    """The module mapping the last hidden state to logits (BERT ``cls``, GPT-2 ``lm_head``)."""
    for name in ("cls", "lm_head"):
        module = getattr(model, name, None)
        if module is not None:
            return module
    return None


def load_head(loaded: LoadedModel, *, allow_download: bool | None = None) -> Any | None:
    """The run model with its language-model head, when its folder has one; else None.

    Loaded from the same files as the run's encoder (``loaded.path``), with
    ``AutoModelForMaskedLM`` or ``AutoModelForCausalLM`` as ``config.architectures``
    says. A folder that names a head but lacks its weights gives None (and a warning):
    a randomly initialised head would report effects on nothing.
    """
    kind = output_kind_of(loaded.model.config)
    if kind == "sentence-embedding":
        return None
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    if allow_download is None:
        allow_download = os.environ.get("FACTORSCOPE_ALLOW_DOWNLOAD") == "1"
    auto = AutoModelForMaskedLM if kind == "masked-lm" else AutoModelForCausalLM
    try:
        model, info = auto.from_pretrained(
            loaded.path, local_files_only=not allow_download, output_loading_info=True
        )
    except (OSError, ValueError, KeyError) as e:
        log.warning("no language-model head loaded from %s: %s", loaded.path, e)
        return None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        log.warning(
            "the model at %s names a head (%s) but lacks its weights (%s): no head is used",
            loaded.path,
            kind,
            ", ".join(missing[:3]),
        )
        return None
    model.eval()
    model.to(loaded.device)
    return model


@dataclass
class Intervener:
    """The run's model (with its head when it has one), ready for edited forward passes.

    Build it with :meth:`from_loaded`; :meth:`run` does the batched passes. A pass may
    *resume* from stored states of a layer ``r`` (``resume=``): the blocks below are
    replaced, for that pass, by modules that hand back those states, so an edit at layer
    ``r`` costs only the blocks above it (an edit at the last layer, none). Replacing
    modules and hooking them changes the model object while a pass runs: callers that
    share the model between threads hold one lock around :meth:`run`.
    """

    loaded: LoadedModel
    model: Any
    """What runs: the head model when there is one, else ``loaded.model``."""
    output_kind: OutputKind
    layout: str
    hook_points: list[Any] = field(repr=False)
    chain: list[tuple[Any, Any]] = field(repr=False)
    """(parent, key) of the modules that run one after the other from layer 1 up, each
    replaceable (``parent[key]`` for a ModuleList, else an attribute)."""
    producer: list[int] = field(repr=False)
    """For layer r >= 1: the index in ``chain`` of the module whose output is layer r."""
    head: Any | None = field(default=None, repr=False)
    """The module that maps the last hidden state to logits (for direct effects), or None."""
    can_resume: bool = False
    """Resuming from stored states reproduces a full pass (checked on load)."""

    @classmethod
    def from_loaded(
        cls, loaded: LoadedModel, *, with_head: bool = True, allow_download: bool | None = None
    ) -> Intervener:
        """Wrap ``loaded``; load its head when ``with_head`` and the folder has one."""
        head_model = load_head(loaded, allow_download=allow_download) if with_head else None
        model = head_model if head_model is not None else loaded.model
        kind: OutputKind = (
            output_kind_of(loaded.model.config) if head_model is not None else "sentence-embedding"
        )
        layout, points = _layout(model)
        n_layers = int(loaded.model.config.num_hidden_layers) + 1
        if len(points) != n_layers:
            raise ModelLoadError(
                f"found {len(points)} hidden-state modules in the model, expected {n_layers}"
            )
        chain, producer = _chain(model, layout, n_layers)
        out = cls(
            loaded=loaded,
            model=model,
            output_kind=kind,
            layout=layout,
            hook_points=points,
            chain=chain,
            producer=producer,
            head=_head_module(head_model) if head_model is not None else None,
        )
        out._check_hook_points()
        return out

    @property
    def n_layers(self) -> int:
        return len(self.hook_points)

    @property
    def hidden_size(self) -> int:
        return int(self.loaded.hidden_size)

    @property
    def has_head(self) -> bool:
        return self.output_kind != "sentence-embedding"

    def token_text(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary entries of ``ids`` (word pieces as the tokenizer writes them)."""
        return list(self.loaded.tokenizer.convert_ids_to_tokens([int(i) for i in ids]))

    def _check_hook_points(self) -> None:
        """Each hooked module's output must be the model's own hidden state of its layer;
        a pass resumed from any layer must give the full pass's last layer."""
        import torch

        (sentence,) = _check_sentence(self.loaded)
        captured: dict[int, Any] = {}
        handles = [
            p.register_forward_hook(_capture(captured, i)) for i, p in enumerate(self.hook_points)
        ]
        ids = torch.from_numpy(sentence.input_ids[None, :]).to(self.loaded.device)
        try:
            with torch.inference_mode():
                out = self.model(
                    input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True
                )
        finally:
            for h in handles:
                h.remove()
        hidden = out.hidden_states
        for layer in range(self.n_layers):
            got = captured.get(layer)
            if (
                got is None
                or got.shape != hidden[layer].shape
                or not torch.allclose(got, hidden[layer], atol=1e-5, rtol=1e-4)
            ):
                raise ModelLoadError(
                    f"cannot edit hidden states of this {self.layout}-like model: the module "
                    f"hooked for layer {layer} does not produce that layer's hidden state"
                )
        if self.head is not None:
            logits = getattr(out, "logits", None)
            try:
                with torch.inference_mode():
                    direct = self.head(hidden[-1])
            except Exception:  # a head that needs more than the last state: no direct effect
                direct = None
            if logits is None or direct is None or not torch.allclose(direct, logits, atol=1e-4):
                self.head = None
        # resuming: every layer's stored states must lead to the same last layer
        self.can_resume = True
        full = self.run([sentence], layers=range(self.n_layers), keep_full=[range(self.n_layers)])
        last = full[0].states[self.n_layers - 1]
        try:
            for r in range(1, self.n_layers):
                (resumed,) = self.run([sentence], resume=(r, [full[0].full[r]]))
                if not np.allclose(resumed.states[self.n_layers - 1], last, atol=1e-4, rtol=1e-4):
                    self.can_resume = False
        except Exception as e:  # any surprise of this model's forward: run every block
            log.info("passes of this model do not resume from stored states: %s", e)
            self.can_resume = False

    def run(
        self,
        sentences: Sequence[TokenizedSentence],
        edits: Sequence[Sequence[Edit]] | None = None,
        *,
        layers: Sequence[int] | None = None,
        read_positions: Sequence[np.ndarray] | None = None,
        keep_full: Sequence[Sequence[int]] | None = None,
        resume: tuple[int, Sequence[np.ndarray]] | None = None,
        batch_size: int = 32,
    ) -> list[ForwardResult]:
        """Forward passes of ``sentences``, each with its own edits, batched.

        Parameters
        ----------
        sentences : sequence of TokenizedSentence
        edits : sequence (one per sentence) of sequences of Edit, optional
            ``None`` or an empty sequence: the clean pass.
        layers : sequence of int, optional
            Layers whose states come back at the kept positions (default: the last one).
        read_positions : sequence (one per sentence) of int arrays, optional
            Input positions whose logits come back (models with a head only).
        keep_full : sequence (one per sentence) of sequences of int, optional
            Layers whose states come back at every input position
            (``ForwardResult.full``), e.g. to resume from them later.
        resume : (layer r, sequence of arrays of shape (n_positions, hidden_size)), optional
            Each sentence's hidden state ``r`` at every input position (``full[r]`` of an
            earlier pass): the blocks up to layer ``r`` are not run. Edits and the layers
            asked for must be at ``r`` or above. Ignored (every block runs) when
            :attr:`can_resume` is False.
        batch_size : int

        Returns
        -------
        results : list of ForwardResult, in input order
        """
        import torch

        n = len(sentences)
        edits = edits if edits is not None else [()] * n
        if len(edits) != n or (read_positions is not None and len(read_positions) != n):
            raise ValueError("edits and read_positions need one entry per sentence")
        if keep_full is not None and len(keep_full) != n:
            raise ValueError("keep_full needs one entry per sentence")
        last = self.n_layers - 1
        wanted = sorted({last, *(int(x) for x in (layers or ()))})
        start = 0
        if resume is not None and self.can_resume and int(resume[0]) > 0:
            start = int(resume[0])
            if len(resume[1]) != n:
                raise ValueError("resume needs one state array per sentence")
        for layer in (*wanted, *(int(x) for per in (keep_full or ()) for x in per)):
            if not start <= layer <= last:
                raise ValueError(f"layer {layer} cannot come back ({start}..{last})")
        for per in edits:
            for e in per:
                if not start <= e.layer <= last:
                    raise ValueError(f"cannot edit layer {e.layer} ({start}..{last})")
        pad_id = self.loaded.tokenizer.pad_token_id or 0
        order = np.argsort([s.n_positions for s in sentences], kind="stable")
        results: list[ForwardResult | None] = [None] * n
        with torch.inference_mode():
            for first in range(0, n, batch_size):
                batch = [int(i) for i in order[first : first + batch_size]]
                replay = None
                if start:
                    replay = [np.asarray(resume[1][i], dtype=np.float32) for i in batch]  # type: ignore[index]
                done = self._batch(
                    [sentences[i] for i in batch],
                    [edits[i] for i in batch],
                    wanted,
                    None if read_positions is None else [read_positions[i] for i in batch],
                    None if keep_full is None else [keep_full[i] for i in batch],
                    pad_id,
                    start,
                    replay,
                )
                for row, i in enumerate(batch):
                    results[i] = done[row]
        return results  # type: ignore[return-value]

    def _batch(
        self,
        sentences: list[TokenizedSentence],
        edits: list[Sequence[Edit]],
        wanted: list[int],
        read_positions: list[np.ndarray] | None,
        keep_full: list[Sequence[int]] | None,
        pad_id: int,
        start: int,
        replay: list[np.ndarray] | None,
    ) -> list[ForwardResult]:
        import torch

        device = self.loaded.device
        width = max(s.n_positions for s in sentences)
        ids = np.full((len(sentences), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(sentences), width), dtype=np.int64)
        for row, s in enumerate(sentences):
            ids[row, : s.n_positions] = s.input_ids
            mask[row, : s.n_positions] = 1
        deltas: dict[int, np.ndarray] = {}
        for row, per in enumerate(edits):
            for e in per:
                if len(e.positions) == 0:
                    continue
                if e.layer not in deltas:
                    deltas[e.layer] = np.zeros(
                        (len(sentences), width, self.hidden_size), dtype=np.float32
                    )
                deltas[e.layer][row, np.asarray(e.positions, dtype=np.int64)] += e.delta
        full_layers = sorted({int(x) for per in (keep_full or ()) for x in per})
        captured: dict[int, Any] = {}
        handles: list[Any] = []
        swapped: list[tuple[Any, Any, Any]] = []
        points = list(self.hook_points)
        try:
            if start:
                stored = np.zeros((len(sentences), width, self.hidden_size), dtype=np.float32)
                for row, state in enumerate(replay or ()):
                    stored[row, : state.shape[0]] = state
                value = torch.from_numpy(stored).to(device)
                top = self.producer[start]
                for k in range(top + 1):
                    parent, key = self.chain[k]
                    stub = _replay(value if k == top else None)
                    swapped.append((parent, key, _swap(parent, key, stub)))
                    if k == top:
                        points[start] = stub
            for layer, delta in deltas.items():
                tensor = torch.from_numpy(delta).to(device)
                handles.append(points[layer].register_forward_hook(_adder(tensor)))
            # registered after the edits: the captured states are the edited ones
            for layer in sorted({*wanted, *full_layers}):
                handles.append(points[layer].register_forward_hook(_capture(captured, layer)))
            attention = torch.from_numpy(mask).to(device)
            kwargs: dict[str, Any] = {}
            if self.layout == "gpt2":
                kwargs["use_cache"] = False
            output = self.model(
                input_ids=torch.from_numpy(ids).to(device), attention_mask=attention, **kwargs
            )
        finally:
            for h in handles:
                h.remove()
            for parent, key, original in reversed(swapped):
                _swap(parent, key, original)
        last = self.n_layers - 1
        final = captured[last].float()
        weights = attention.unsqueeze(-1).to(final.dtype)
        pooled = ((final * weights).sum(1) / weights.sum(1).clamp_min(1)).cpu().numpy()
        states = {layer: captured[layer].float().cpu().numpy() for layer in captured}
        logits = getattr(output, "logits", None) if self.has_head else None
        out = []
        for row, s in enumerate(sentences):
            keep = s.positions
            picked_logits = None
            if logits is not None and read_positions is not None:
                at = torch.as_tensor(np.asarray(read_positions[row], dtype=np.int64))
                picked = logits[row, at.to(device)].float()
                picked_logits = picked.cpu().numpy()
            full = {}
            if keep_full is not None:
                full = {
                    int(x): np.ascontiguousarray(states[int(x)][row, : s.n_positions])
                    for x in keep_full[row]
                }
            out.append(
                ForwardResult(
                    states={
                        layer: np.ascontiguousarray(states[layer][row][keep]) for layer in wanted
                    },
                    pooled=pooled[row].copy(),
                    logits=picked_logits,
                    full=full,
                )
            )
        return out

    def head_logits(self, states: np.ndarray) -> np.ndarray | None:
        """The head alone on last-layer states, shape ``(n, hidden_size)`` -> ``(n, vocab)``
        logits; None when the model has no head (or one that needs more than the last
        state)."""
        if self.head is None:
            return None
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(states, dtype=np.float32))
            return self.head(x.to(self.loaded.device)).float().cpu().numpy()


def _check_sentence(loaded: LoadedModel) -> list[TokenizedSentence]:
    from factorscope.ingest.runner import tokenize

    return tokenize(loaded, ["factorscope checks where its hooks land."], keep_special=True)


def _chain(model: Any, layout: str, n_layers: int) -> tuple[list[tuple[Any, Any]], list[int]]:
    """The replaceable modules from layer 1 up, and which of them produces each layer."""
    base = getattr(model, "base_model", model)
    if layout == "bert":
        blocks = base.encoder.layer
        chain = [(blocks, i) for i in range(len(blocks))]
        producer = [-1, *range(len(blocks))]
    else:
        blocks = base.h
        chain = [(blocks, i) for i in range(len(blocks))] + [(base, "ln_f")]
        producer = [-1, *range(len(blocks) - 1), len(blocks)]
    if len(producer) != n_layers:
        raise ModelLoadError(f"found {len(producer)} layers in the model, expected {n_layers}")
    return chain, producer


def _swap(parent: Any, key: Any, module: Any) -> Any:
    """Put ``module`` at ``parent[key]`` (or attribute ``key``); returns the one it replaced."""
    if isinstance(key, int):
        old = parent[key]
        parent[key] = module
    else:
        old = getattr(parent, key)
        setattr(parent, key, module)
    return old


def _replay_class():
    import torch

    class Replay(torch.nn.Module):
        """Stands in for a block during a resumed pass: hands back stored states (the
        block that produced the resumed layer) or its input unchanged (the ones below)."""

        def __init__(self, value: Any) -> None:
            super().__init__()
            self.value = value

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            if self.value is not None:
                return self.value
            return args[0] if args else kwargs["hidden_states"]

    return Replay


def _replay(value: Any) -> Any:
    """A Replay module (its class is built on first use: torch is imported late)."""
    global _REPLAY
    if _REPLAY is None:
        _REPLAY = _replay_class()
    return _REPLAY(value)


_REPLAY: Any = None


def _adder(delta: Any):
    def hook(_module, _inputs, output):
        return _replace_first(output, _first(output) + delta.to(_first(output).dtype))

    return hook


def _capture(into: dict[int, Any], layer: int):
    def hook(_module, _inputs, output):
        into[layer] = _first(output).detach()

    return hook
