"""The plain functions behind the callbacks: inputs in, data out, no Dash.

Every function takes the database path and opens its own short-lived read-only
connection through :class:`factorscope.warehouse.queries.WarehouseReader`; the
callbacks in ``pages/`` only unpack inputs, call one of these and render the result.
User mistakes raise :class:`factorscope.errors.InputError` with a message meant to be
shown as is.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import polars as pl

from factorscope.errors import FactorscopeError, InputError
from factorscope.limits import LIMITS, SQL_MAX_ROWS, TOP_K
from factorscope.stages import evidence_summary
from factorscope.warehouse import comparisons, evidence_read, queries, store
from factorscope.warehouse import effects as effects_read
from factorscope.warehouse.connection import file_signature
from factorscope.warehouse.queries import LEVELS, MAX_LABEL_LENGTH, WarehouseReader
from factorscope.warehouse.safe_sql import run_safe_query

CONTEXTS_PER_PAGE = 50
TOP_CONTEXTS = TOP_K
_INT = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# --------------------------------------------------------------------------- validation


def parse_factor(raw: Any, n_factors: int) -> int:
    """The factor number a user typed, or :class:`InputError` saying what is wrong.

    Accepts an int or a string of digits (surrounding spaces allowed); refuses empty
    input, letters, fractions, negatives and numbers past the dictionary's size.
    """
    top = n_factors - 1
    allowed = f"enter a whole number from 0 to {top}"
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InputError(f"No factor given: {allowed}.")
    if isinstance(raw, bool):
        raise InputError(f"{raw!r} is not a factor number: {allowed}.")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        if not raw.is_integer():
            raise InputError(f"{raw:g} is not a whole number: {allowed}.")
        value = int(raw)
    else:
        text = str(raw).strip()
        if _INT.match(text):
            value = int(text)
        elif _NUMBER.match(text):
            raise InputError(f"{_short(text)} is not a whole number: {allowed}.")
        else:
            raise InputError(f"{_short(text)!r} is not a factor number: {allowed}.")
    if value < 0:
        raise InputError(f"Factor {_short(str(value))} is negative: {allowed}.")
    if value > top:
        raise InputError(
            f"Factor {_short(str(value))} does not exist: this dictionary has "
            f"{n_factors} factors ({allowed})."
        )
    return value


def parse_layer(raw: Any, layers: list[int]) -> int | None:
    """A layer from the URL, or None when absent; :class:`InputError` when not one of ``layers``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    text = str(raw).strip()
    if not _INT.match(text) or int(text) not in layers:
        shown = ", ".join(str(layer) for layer in layers)
        raise InputError(f"Layer {_short(text)!r} does not exist: choose one of {shown}.")
    return int(text)


def parse_n_samples(
    raw: Any,
    *,
    low: int = int(LIMITS["lime_samples"].low),
    high: int = int(LIMITS["lime_samples"].high),
    name: str = "Samples",
) -> int:
    """LIME's sample count (its range: ``limits.LIMITS["lime_samples"]``, as ``serve
    --lime-samples``), or another bounded count named ``name``, from a number box."""
    try:
        value = int(str(raw).strip()) if raw is not None else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high}.")
    return value


# --------------------------------------------------------------------------- dictionary

_DICTIONARY: ContextVar[int | None] = ContextVar("fs_dictionary", default=None)
"""The dictionary the current request shows (None: the last encoded one). Set by the
pages from the URL (``?dictionary=N``) around their work, read by every function here."""


def parse_dictionary(raw: Any) -> int | None:
    """The ``dictionary`` of a URL (None when absent); :class:`InputError` when not a number."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    text = str(raw).strip()
    if not _INT.match(text) or int(text) < 1:
        raise InputError(f"Dictionary {_short(text)!r} is not a dictionary id (1, 2, ...).")
    return int(text)


@contextlib.contextmanager
def dictionary_scope(raw: Any) -> Iterator[int | None]:
    """Within the block, every function here reads dictionary ``raw`` (from a URL or a
    page's state); the picker's choice travels in URLs, never in server state."""
    token = _DICTIONARY.set(parse_dictionary(raw))
    try:
        yield _DICTIONARY.get()
    finally:
        _DICTIONARY.reset(token)


def current_dictionary() -> int | None:
    """The dictionary chosen for this request (None: the default, the last encoded one)."""
    return _DICTIONARY.get()


def _connect(db_path: str | Path):
    """A read-only cursor whose views show this request's dictionary."""
    return WarehouseReader(db_path).connect(_DICTIONARY.get())


def encoded_dictionaries(db_path: str | Path) -> list[dict[str, Any]]:
    """The dictionaries the picker offers (encoded ones), with the one shown flagged."""
    with _connect(db_path) as con:
        return queries.encoded_dictionaries(con)


def factor_href(factor: int, layer: int | None = None, dictionary: int | None = None) -> str:
    """The shareable URL of a factor's page; it names the dictionary chosen for this
    request (or ``dictionary``) so the link shows the same factor to whoever opens it."""
    params: dict[str, int] = {}
    if layer is not None:
        params["layer"] = int(layer)
    chosen = dictionary if dictionary is not None else _DICTIONARY.get()
    if chosen is not None:
        params["dictionary"] = int(chosen)
    query = f"?{urlencode(params)}" if params else ""
    return f"/factor/{int(factor)}{query}"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- factor page


@dataclass(frozen=True, eq=False)
class FactorView:
    """Everything the factor page shows (shared between requests: never mutate it).

    ``top`` holds all of the top contexts (up to :data:`TOP_CONTEXTS`), so that paging
    through them needs no query; ``contexts`` is its first page. ``label`` is the
    user's label, else the automatic one; ``user_label`` and ``auto_label`` are each
    (the page puts only the user's in the Label box). ``interval_bounds`` gives each
    activation interval's own bounds and token count (the samples are ``intervals``).
    ``evidence`` is what ``factorscope explain`` says of the factor at ``layer``
    (:class:`FactorEvidence`; None only when nothing is encoded).
    """

    factor: int
    layer: int
    layers: list[int]
    n_factors: int
    peak_layer: int | None
    level: str | None
    label: str | None
    importance: pl.DataFrame
    contexts: pl.DataFrame
    total_contexts: int
    histogram: pl.DataFrame
    intervals: list[dict[str, Any]] = field(default_factory=list)
    neighbors: pl.DataFrame | None = None
    top: pl.DataFrame | None = None
    dictionary_id: int | None = None
    user_label: str | None = None
    auto_label: str | None = None
    interval_bounds: list[dict[str, Any]] = field(default_factory=list)
    evidence: FactorEvidence | None = None
    effects: FactorEffects | None = None


PAGE_CACHE_ENTRIES = 256
"""Factor page views kept per process. A view with its drawn parts (the page keeps
them beside the view, see ``pages/factor.py``) takes about 0.25 MB, measured on the
synthetic database: ~40 kB of data (200 contexts of ~20 words, 25 interval samples)
and ~190 kB of Python objects for the drawn page; so the cache stays under ~70 MB."""


@dataclass(frozen=True)
class _FileInfo:
    """What every view of one version of a file shares."""

    signature: tuple[int, int] | None
    dictionary_id: int
    n_factors: int
    layers: list[int]
    default_factor: int


class PageCache:
    """A bounded LRU of :class:`FactorView` (and LIME targets), keyed by the published
    file's signature.

    Keys are ``(file, (inode, mtime_ns), dictionary id, factor, layer)``: a new publish
    (``os.replace``) or any write to the file (a label, a LIME result) changes the
    signature, so old views are never served again; they are dropped as soon as a
    newer signature of the same file is seen, and the least recently used view goes
    when the cache is full. Thread-safe.
    """

    def __init__(self, max_entries: int = PAGE_CACHE_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._views: OrderedDict[tuple, Any] = OrderedDict()
        self._files: dict[str, _FileInfo] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._views)

    def file_info(self, db_path: str | Path) -> _FileInfo:
        """What every view of the file shares (size, layers), read once per signature."""
        key = os.path.realpath(db_path)
        chosen = _DICTIONARY.get()
        signature = file_signature(db_path)
        with self._lock:
            info = self._files.get((key, chosen))
        if info is not None and info.signature == signature:
            return info
        with _connect(db_path) as con:
            dictionary_id = queries.active_dictionary_id(con)
            info = _FileInfo(
                signature=signature,
                dictionary_id=dictionary_id,
                n_factors=int(queries.dictionary_size(con)),
                layers=[int(x) for x in queries.layers(con)],
                default_factor=_default_factor(con),
            )
        with self._lock:
            self._files[(key, chosen)] = info
            stale = [k for k in self._views if k[0] == key and k[1] != signature]
            for k in stale:
                del self._views[k]
        return info

    def get(self, key: tuple) -> Any:
        with self._lock:
            view = self._views.get(key)
            if view is None:
                self.misses += 1
                return None
            self._views.move_to_end(key)
            self.hits += 1
            return view

    def put(self, key: tuple, view: Any) -> None:
        with self._lock:
            self._views[key] = view
            self._views.move_to_end(key)
            while len(self._views) > self.max_entries:
                self._views.popitem(last=False)

    def clear(self, db_path: str | Path | None = None) -> None:
        """Forget every view (of one file, when given)."""
        with self._lock:
            if db_path is None:
                self._views.clear()
                self._files.clear()
                return
            key = os.path.realpath(db_path)
            for file_key in [k for k in self._files if k[0] == key]:
                del self._files[file_key]
            for k in [k for k in self._views if k[0] == key]:
                del self._views[k]


PAGE_CACHE = PageCache()
"""The app's cache of factor page views (one per process)."""


def dictionary_size(db_path: str | Path) -> int:
    return PAGE_CACHE.file_info(db_path).n_factors


def default_factor(db_path: str | Path) -> int:
    """The factor ``/`` shows: a random high-level factor if any, else a mid, else 0."""
    return PAGE_CACHE.file_info(db_path).default_factor


def _default_factor(con: Any) -> int:
    for level in ("high", "mid", "low"):
        picked = queries.random_factor(con, level, seed=0)
        if picked is not None:
            return int(picked)
    return 0


def factor_view(
    db_path: str | Path,
    factor_raw: Any,
    layer_raw: Any = None,
    *,
    cache: PageCache | None = None,
) -> FactorView:
    """Validate ``factor_raw`` / ``layer_raw`` and gather the factor page's data.

    The layer defaults to the factor's importance-score peak. Views come from
    ``cache`` (default :data:`PAGE_CACHE`); a miss reads the page in one go
    (:func:`factorscope.warehouse.queries.factor_page`).
    """
    cache = PAGE_CACHE if cache is None else cache
    key, view = _cached(cache, db_path, factor_raw, layer_raw)
    if view is not None:
        return view
    factor, layer = key[-2:]
    with _connect(db_path) as con:
        page = queries.factor_page(con, factor, layer, top_k=TOP_CONTEXTS)
        evidence = (
            _factor_evidence(con, page["dictionary_id"], factor, page["layer"], page["peak_layer"])
            if page["encoded"]
            else None
        )
        effects = (
            _factor_effects(con, db_path, page["dictionary_id"], factor, page["layer"])
            if page["encoded"]
            else None
        )
    if not page["encoded"]:
        raise InputError(
            f"This database has a dictionary but no codes yet, so no factor is ever "
            f"active: run `factorscope encode --db {db_path}`, then reload this page."
        )
    top = page["top"]
    view = FactorView(
        factor=factor,
        layer=page["layer"],
        layers=page["layers"],
        n_factors=page["n_factors"],
        peak_layer=page["peak_layer"],
        level=page["level"],
        label=page["label"],
        importance=page["importance"],
        contexts=top.head(CONTEXTS_PER_PAGE),
        total_contexts=min(top.height, TOP_CONTEXTS),
        histogram=page["histogram"],
        intervals=_rows(page["intervals"]),
        neighbors=page["neighbors"],
        top=top,
        dictionary_id=page["dictionary_id"],
        user_label=page["user_label"],
        auto_label=page["auto_label"],
        interval_bounds=list(page["interval_bounds"]),
        evidence=evidence,
        effects=effects,
    )
    cache.put(key, view)
    if layer is None:  # /factor/5 and /factor/5?layer=<its peak> are the same view
        cache.put((*key[:-1], view.layer), view)
    return view


def cached_view(db_path: str | Path, factor: Any, layer: Any) -> FactorView | None:
    """The view of (factor, layer) if :data:`PAGE_CACHE` holds it; None otherwise."""
    return _cached(PAGE_CACHE, db_path, factor, layer)[1]


def _cached(
    cache: PageCache, db_path: str | Path, factor_raw: Any, layer_raw: Any
) -> tuple[tuple, FactorView | None]:
    """(cache key, cached view or None) of validated ``factor_raw`` / ``layer_raw``."""
    info = cache.file_info(db_path)
    factor = parse_factor(factor_raw, info.n_factors)
    layer = parse_layer(layer_raw, info.layers)
    key = (os.path.realpath(db_path), info.signature, info.dictionary_id, factor, layer)
    return key, cache.get(key)


def contexts_page(
    db_path: str | Path, factor: int, layer: int, page: int, *, per_page: int = CONTEXTS_PER_PAGE
) -> pl.DataFrame:
    """One page (1-based) of the factor's top-200 contexts at ``layer``.

    A slice of the cached view when there is one (there is, right after the page was
    shown); else one query, without gathering the whole page.
    """
    page = max(1, int(page or 1))
    offset = (page - 1) * per_page
    if offset >= TOP_CONTEXTS:
        raise InputError(f"Page {page} is past the top {TOP_CONTEXTS} contexts.")
    k = min(per_page, TOP_CONTEXTS - offset)
    view = cached_view(db_path, int(factor), int(layer))
    if view is not None:
        return view.top.slice(offset, k)
    with _connect(db_path) as con:
        return queries.top_contexts(con, int(factor), int(layer), k=k, offset=offset)


def pick_random(db_path: str | Path, level: str, *, seed: int | None = None) -> int:
    """A random factor of ``level``; :class:`InputError` if that level has none."""
    if level not in LEVELS:
        raise InputError(f"Unknown level {level!r}: choose one of {', '.join(LEVELS)}.")
    with _connect(db_path) as con:
        picked = queries.random_factor(con, level, seed=seed)
    if picked is None:
        raise InputError(f"No {level}-level factor in this dictionary.")
    return int(picked)


def save_label(db_path: str | Path, factor: int, label: str | None) -> str:
    """Store a factor's label (empty clears it); returns a confirmation to show.

    A label over :data:`MAX_LABEL_LENGTH` characters is refused whole (an
    :class:`InputError` giving its length and the limit), never cut and saved.
    """
    text = (label or "").strip()
    if len(text) > MAX_LABEL_LENGTH:
        raise InputError(label_too_long(len(text)))
    queries.set_label(db_path, int(factor), text, dictionary_id=_DICTIONARY.get())
    PAGE_CACHE.clear(db_path)  # the write changed the file's signature too; be explicit
    return f"Saved label of factor {int(factor)}." if text else f"Cleared label of {int(factor)}."


def label_too_long(length: int) -> str:
    """What the page says about a label of ``length`` characters over the limit."""
    return f"label is too long ({length} > {MAX_LABEL_LENGTH} characters): shorten it"


def lime_targets(db_path: str | Path, factor: int, layer: int, *, count: int) -> list[dict]:
    """The top ``count`` contexts as LIME inputs: the sentence and the ranked token in it.

    A target is the ranked token itself: its word (``word_index``, the tokenizer's
    word number) and which piece of that word it is (``piece``, 0 for the first), so a
    context ranked for ``##ing`` is explained at ``##ing``, not at the word's first piece.
    Kept in :data:`PAGE_CACHE` beside the view (a high-level factor's page asks for
    them on every visit).
    """
    view = factor_view(db_path, int(factor), int(layer))
    info = PAGE_CACHE.file_info(db_path)
    key = (os.path.realpath(db_path), info.signature, view.dictionary_id, view.factor)
    key = (*key, view.layer, "lime", int(count))
    cached = PAGE_CACHE.get(key)
    if cached is not None:
        return [dict(target) for target in cached]
    top = view.top.head(int(count))
    with _connect(db_path) as con:
        sentences = queries.sentences(con, [int(i) for i in top["sentence_idx"]])
    targets = []
    for row in top.iter_rows(named=True):
        sentence = sentences[int(row["sentence_idx"])]
        found = _piece_of(sentence, int(row["token_id"]))
        if found is None:
            continue
        word_index, piece, piece_text = found
        targets.append(
            {
                "text": sentence["text"],
                "sentence_idx": int(row["sentence_idx"]),
                "word_index": word_index,
                "piece": piece,
                "piece_text": piece_text,
                "word": row["word"],
                "layer": int(layer),
                "factor": int(factor),
                "alpha": float(row["alpha"]),
            }
        )
    PAGE_CACHE.put(key, targets)
    return [dict(target) for target in targets]


def _piece_of(sentence: dict, token_id: int) -> tuple[int, int, str] | None:
    """(word_index, piece number within the word, piece) of a stored token, if it has a word."""
    tokens = sentence.get("tokens", [])
    for token in tokens:
        if int(token["token_id"]) != token_id:
            continue
        if token.get("word_index") is None:
            return None  # a special token ([CLS], [SEP]) kept by keep_special
        word_index = int(token["word_index"])
        piece = sum(
            1
            for other in tokens
            if other.get("word_index") is not None
            and int(other["word_index"]) == word_index
            and int(other["position"]) < int(token["position"])
        )
        return word_index, piece, str(token.get("piece") or "")
    return None


def _rows(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, pl.DataFrame):
        return value.to_dicts()
    return list(value)


# --------------------------------------------------------------------------- evidence


def explain_command(dictionary_id: int) -> str:
    """The command that explains a dictionary (and its encoded controls)."""
    return f"factorscope explain --dictionary {int(dictionary_id)}"


def control_commands(dictionary_id: int) -> list[str]:
    """The commands that give a dictionary a control to be compared with: learn one
    (random Gaussian atoms at the dictionary's sparsity), encode it, explain both."""
    return [
        f"factorscope learn --control gaussian --parent {int(dictionary_id)}",
        "factorscope encode --dictionary N",
        explain_command(dictionary_id),
    ]


@dataclass(frozen=True, eq=False)
class FactorEvidence:
    """What ``factorscope explain`` says about one factor at one layer, and what the
    dictionary's controls score there (the factor page's Explanation card).

    ``explained_layers`` is empty when the dictionary was never explained;
    ``explanation`` is None when this layer was not (see
    :func:`factorscope.warehouse.evidence_read.factor_explanation` for its keys);
    ``controls`` is :func:`~factorscope.warehouse.evidence_read.control_detection` at
    this layer; ``peak_explanation`` the explanation at the factor's peak layer when a
    rule was found there (it is then the factor's automatic label).
    """

    dictionary_id: int
    layer: int
    kind: str
    parent_id: int | None
    explained_layers: list[int]
    explanation: dict[str, Any] | None
    controls: dict[str, Any]
    peak_explanation: dict[str, Any] | None = None


def _factor_evidence(
    con: Any, dictionary_id: int, factor: int, layer: int, peak: int | None
) -> FactorEvidence:
    found = evidence_read.factor_evidence(con, dictionary_id, factor, layer, peak_layer=peak)
    return FactorEvidence(
        dictionary_id=int(dictionary_id),
        layer=int(layer),
        kind=str(found["kind"]),
        parent_id=found["parent_id"],
        explained_layers=found["explained_layers"],
        explanation=found["explanation"],
        controls=found["controls"],
        peak_explanation=found["peak_explanation"],
    )


def evidence_view(db_path: str | Path) -> evidence_summary.EvidenceView:
    """The Evidence page's data for this request's dictionary (cached per file version)."""
    info = PAGE_CACHE.file_info(db_path)
    key = (os.path.realpath(db_path), info.signature, info.dictionary_id, "evidence")
    cached = PAGE_CACHE.get(key)
    if cached is not None:
        return cached
    with _connect(db_path) as con:
        view = evidence_summary.summarise_evidence(con, info.dictionary_id)
    PAGE_CACHE.put(key, view)
    return view


def evidence_href(dictionary: int | None = None) -> str:
    """The Evidence page of this request's dictionary (or ``dictionary``)."""
    chosen = dictionary if dictionary is not None else _DICTIONARY.get()
    return "/evidence" if chosen is None else f"/evidence?{urlencode({'dictionary': chosen})}"


# --------------------------------------------------------------------------- effects

EFFECTS_COMMAND = "factorscope effects"
"""The command that measures every factor of a dictionary at its peak layer."""

OUTPUT_KIND_TEXT: dict[str, str] = {
    "sentence-embedding": (
        "This model has no language-model head: factorscope shows the sentence-embedding "
        "effect (the mean of the last layer over the sentence, as sentence-transformers "
        "pools it) and the change of the same tokens' last-layer state."
    ),
    "masked-lm": (
        "This model has a masked-language-model head: factorscope shows the output tokens "
        "the factor promotes and suppresses, the change of the output distribution, and "
        "the sentence-embedding effect."
    ),
    "causal-lm": (
        "This model has a causal-language-model head: factorscope shows the output tokens "
        "the factor promotes and suppresses, the change of the output distribution, and "
        "the sentence-embedding effect."
    ),
}
"""What the factor page says about the run's model's output, per output kind."""


@dataclass(frozen=True, eq=False)
class FactorEffects:
    """What is stored of one factor's effects (the factor page's Effects card).

    ``effect``: the stored effect at the layer shown
    (:func:`factorscope.warehouse.effects.factor_effect`), or None; ``layers``: the
    layers where one is stored (columns layer, source, output_kind, effect, control);
    ``neighbors``: the stored effects of its nearest neighbours
    (:func:`~factorscope.warehouse.effects.neighbor_effects`); ``output_kind``: what the
    run's model gives (the stored effect's, else its folder's ``config.json``; None when
    neither says); ``tables``: False on a file made before the effect tables.
    """

    dictionary_id: int
    factor: int
    layer: int
    effect: dict[str, Any] | None
    layers: pl.DataFrame
    neighbors: pl.DataFrame
    output_kind: str | None
    tables: bool = True


def _factor_effects(
    con: Any, db_path: str | Path, dictionary_id: int, factor: int, layer: int
) -> FactorEffects:
    tables = effects_read.has_effect_tables(con)
    layers = effects_read.effect_layers(con, dictionary_id, factor)
    stored = layers.height and int(layer) in layers["layer"].to_list()
    effect = effects_read.factor_effect(con, dictionary_id, factor, layer) if stored else None
    kind = effect["output_kind"] if effect is not None else None
    if kind is None and layers.height:
        kind = str(layers["output_kind"][0])
    if kind is None:
        kind = _model_output_kind(con, db_path)
    return FactorEffects(
        dictionary_id=int(dictionary_id),
        factor=int(factor),
        layer=int(layer),
        effect=effect,
        layers=layers,
        neighbors=effects_read.neighbor_effects(con, dictionary_id, factor),
        output_kind=kind,
        tables=tables,
    )


_OUTPUT_KINDS: dict[tuple, str | None] = {}
_OUTPUT_KINDS_LOCK = threading.Lock()


def _model_output_kind(con: Any, db_path: str | Path) -> str | None:
    """What the run's model outputs, from its folder's ``config.json`` (read once per
    file version; no model is loaded): None when the folder cannot be found."""
    key = (os.path.realpath(db_path), file_signature(db_path))
    with _OUTPUT_KINDS_LOCK:
        if key in _OUTPUT_KINDS:
            return _OUTPUT_KINDS[key]
    kind = None
    run = store.get_run(con)
    if run is not None:
        kind = model_output_kind(run.get("model"), run.get("model_path"))
    with _OUTPUT_KINDS_LOCK:
        _OUTPUT_KINDS[key] = kind
    return kind


def model_output_kind(model: str | None, model_path: str | None = None) -> str | None:
    """The output kind (``sentence-embedding``, ``masked-lm``, ``causal-lm``) that the
    config.json of a run's model (its recorded name, else its recorded path) declares."""
    import json
    from types import SimpleNamespace

    from factorscope.ingest.intervene import output_kind_of
    from factorscope.ingest.model import resolve_model

    candidates = []
    # the packaged model's package may be missing: then the recorded path is tried
    with contextlib.suppress(Exception):
        candidates.append(Path(resolve_model(model)[1]))
    if model_path:
        candidates.append(Path(model_path))
    for folder in candidates:
        config_file = folder / "config.json"
        try:
            found = json.loads(config_file.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        architectures = found.get("architectures") if isinstance(found, dict) else None
        return output_kind_of(SimpleNamespace(architectures=architectures or []))
    return None


def steer_href(factor: int, layer: int, dictionary: int | None = None) -> str:
    """The Analyze page with its Steer panel set to ``factor`` at ``layer``."""
    params: dict[str, int] = {"steer": int(factor), "layer": int(layer)}
    chosen = dictionary if dictionary is not None else _DICTIONARY.get()
    if chosen is not None:
        params["dictionary"] = int(chosen)
    return f"/analyze?{urlencode(params)}"


# --------------------------------------------------------------------------- steering

STEER_SHOWN = 3
"""Top factors per token the Steer result shows before and after."""
STEER_READ = 8
"""Top factors per token read from the steered pass (the changes are summed over them)."""
STEER_CHANGES = 5
"""Factors listed per layer among the largest gains and losses."""


def parse_strength(raw: Any) -> float | None:
    """A steering strength typed in a box: None when empty (the page then uses the
    factor's typical α at the layer), else a number from -1000 to 1000."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise InputError(f"{raw!r} is not a strength: enter a number such as 2 or -1.5.")
    text = str(raw).strip()
    if not isinstance(raw, int | float) and not _NUMBER.match(text):
        raise InputError(f"{_short(text)!r} is not a strength: enter a number such as 2 or -1.5.")
    value = float(raw) if isinstance(raw, int | float) else float(text)
    if value != value or abs(value) > 1000:  # NaN or too large
        raise InputError("Strength must be a number from -1000 to 1000.")
    return value


def steer_text(
    analyzer: Any,
    db_path: str | Path,
    text: Any,
    factor_raw: Any,
    layer_raw: Any,
    strength_raw: Any = None,
) -> dict[str, Any]:
    """Steer a sentence live: add factor ``factor_raw`` at ``strength_raw`` to every token
    at layer
    ``layer_raw`` (empty strength: :func:`typical_strength`); what changed at every layer
    from the steered one up, as the Steer panel draws it.

    ``layers``: one entry per layer from the steered one up, each with ``rows`` (per
    token: its top factors before and after, whether its top factor changed, the cosine
    of its state before and after),
    ``top_changed`` (tokens whose top factor changed), the steered factor's mean α
    before and after, and ``gains`` / ``losses`` (the factors whose α, summed over the
    tokens, rose or fell most, among each token's top factors); ``embedding_cosine``:
    the pooled sentence embedding's cosine before/after; ``predictions``: with a head,
    the top predictions at each token before and after (None without one).
    """
    sentence = text.strip() if isinstance(text, str) else ""
    if not sentence:
        raise InputError("Type a sentence to steer.")
    if len(sentence) > 2000:
        raise InputError("A sentence can be at most 2000 characters.")
    info = PAGE_CACHE.file_info(db_path)
    factor = parse_factor(factor_raw, info.n_factors)
    if layer_raw is None or (isinstance(layer_raw, str) and not layer_raw.strip()):
        raise InputError("Choose the layer to add the factor at.")
    layer = parse_layer(layer_raw, info.layers)
    strength = parse_strength(strength_raw)
    source, peak = "typed", None
    if strength is None:
        strength, peak = typical_strength(db_path, factor, layer)
        source = "typical" if peak is not None else "default"
    run = getattr(analyzer, "steer", None)
    if run is None:
        raise InputError("Steering needs the run's model, which this server has not loaded.")
    result = run(sentence, factor, layer, strength, top=STEER_READ)
    data = steer_summary(result.to_dict() if hasattr(result, "to_dict") else dict(result))
    data["strength_source"] = source
    data["strength_layer"] = peak
    data["labels"] = {
        str(f): label for f, label in sorted(factor_labels(db_path, _steer_factors(data)).items())
    }
    return data


STEER_TYPICAL_CONTEXTS = 20
"""The default strength is the mean α of this many of the factor's strongest contexts."""


def typical_strength(db_path: str | Path, factor: int, layer: int) -> tuple[float, int | None]:
    """The Steer panel's default strength and the layer it was read at: the mean α of
    the factor's :data:`STEER_TYPICAL_CONTEXTS` strongest contexts at ``layer`` (as
    strongly as it fires where it fires), at its peak layer when it never fires at
    ``layer`` (the dictionary's preprocessing puts every layer on one scale); (1.0, None)
    for a factor that never fires. (The importance score counts the missing ones of its
    1,000 largest α as zeros: too small a strength for a rare factor.)"""
    with _connect(db_path) as con:
        for at in (int(layer), None):
            if at is None:
                level = queries.factor_level(con, int(factor))
                at = level.get("peak_layer") if level else None
                if at is None:
                    break
            top = queries.top_contexts(con, int(factor), int(at), k=STEER_TYPICAL_CONTEXTS)
            alphas = [float(a) for a in top["alpha"].to_list() if a] if top.height else []
            if alphas:
                return sum(alphas) / len(alphas), int(at)
    return 1.0, None


def _steer_factors(data: dict[str, Any]) -> set[int]:
    found = {int(data["factor"])}
    for layer in data["layers"]:
        found.update(int(f) for f, _ in layer["gains"] + layer["losses"])
    return found


def steer_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The Steer panel's data from a :class:`~factorscope.stages.effects.SteerResult`'s
    dict (see :func:`steer_text`)."""
    tokens = [
        {"text": str(t["text"]), "steered": bool(t["steered"]), "position": int(t["position"])}
        for t in result["tokens"]
    ]
    steered_at = int(result["layer"])
    layers = []
    for x in result["layers"]:
        if int(x["layer"]) < steered_at:
            continue
        rows, top_changed, totals = [], 0, {}
        for t, (before, after) in enumerate(zip(x["before"], x["after"], strict=True)):
            before = [(int(f), float(a)) for f, a in before]
            after = [(int(f), float(a)) for f, a in after]
            first_b = before[0][0] if before else None
            first_a = after[0][0] if after else None
            top_changed += first_b != first_a
            shown_b, shown_a = before[:STEER_SHOWN], after[:STEER_SHOWN]
            rows.append(
                {
                    "token": tokens[t]["text"],
                    "before": shown_b,
                    "after": shown_a,
                    "changed": first_b != first_a,
                    "cosine": float(x["state_cosine"][t]),
                }
            )
            b, a = dict(before), dict(after)
            for f in set(b) | set(a):
                totals[f] = totals.get(f, 0.0) + a.get(f, 0.0) - b.get(f, 0.0)
        # the steered factor's own change is exact (its α at every token is read)
        factor = int(result["factor"])
        totals[factor] = float(sum(x["factor_after"]) - sum(x["factor_before"]))
        ranked = sorted(totals.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
        gains = [(f, d) for f, d in ranked if d > 1e-6][:STEER_CHANGES]
        losses = [(f, d) for f, d in ranked if d < -1e-6][:STEER_CHANGES]
        cosines = [float(c) for c in x["state_cosine"]]
        n = max(len(cosines), 1)
        layers.append(
            {
                "layer": int(x["layer"]),
                "rows": rows,
                "top_changed": int(top_changed),
                "changed": int(x["changed"]),
                "mean_cosine": sum(cosines) / n,
                "min_cosine": min(cosines) if cosines else 1.0,
                "factor_before": sum(x["factor_before"]) / n,
                "factor_after": sum(x["factor_after"]) / n,
                "gains": gains,
                "losses": losses,
            }
        )
    predictions = None
    if result.get("predictions") is not None:
        by_position = {t["position"]: t["text"] for t in tokens}
        predictions = [
            {
                "token": by_position.get(int(p["position"]), str(p["position"])),
                "before": [(str(w), float(q)) for w, q in p["before"]],
                "after": [(str(w), float(q)) for w, q in p["after"]],
            }
            for p in result["predictions"]
        ]
    return {
        "text": result["text"],
        "dictionary": int(result["dictionary_id"]),
        "factor": int(result["factor"]),
        "layer": steered_at,
        "strength": float(result["strength"]),
        "output_kind": str(result["output_kind"]),
        "tokens": tokens,
        "n_layers": len(result["layers"]),
        "layers": layers,
        "embedding_cosine": float(result["embedding_cosine"]),
        "predictions": predictions,
    }


# --------------------------------------------------------------------------- other pages


def overview(db_path: str | Path) -> dict[str, Any]:
    """The run overview page's data: the run, per-layer quality and level counts."""
    with _connect(db_path) as con:
        info = dict(queries.run_overview(con))
        quality = queries.layer_quality(con)
        levels = queries.level_counts(con)
        info["corpus"] = queries.corpus_report(con)
    info["quality"] = quality
    info["levels"] = _level_dict(levels)
    return info


def _level_dict(levels: Any) -> dict[str, int]:
    if isinstance(levels, dict):
        return {str(k): int(v) for k, v in levels.items()}
    if isinstance(levels, pl.DataFrame):
        cols = levels.columns
        name = "level" if "level" in cols else cols[0]
        count = "n_factors" if "n_factors" in cols else ("count" if "count" in cols else cols[-1])
        return {str(r[name]): int(r[count]) for r in levels.iter_rows(named=True)}
    return {}


def search_word(db_path: str | Path, word: Any, layer: Any = None) -> pl.DataFrame:
    """The factors a word activates most, per layer."""
    text = (word or "").strip() if isinstance(word, str) else ""
    if not text:
        raise InputError("Type a word to search for.")
    if len(text) > 100:
        raise InputError("A word can be at most 100 characters.")
    with _connect(db_path) as con:
        layer_value = parse_layer(layer, [int(x) for x in queries.layers(con)])
        return queries.word_factors(con, text, layer=layer_value, limit=20)


def search_labels(db_path: str | Path, text: Any) -> pl.DataFrame:
    """Factors whose label matches ``text``."""
    query = (text or "").strip() if isinstance(text, str) else ""
    if not query:
        raise InputError("Type some text to search the labels for.")
    with _connect(db_path) as con:
        return _frame(queries.search_labels(con, query, limit=50))


def _frame(value: Any) -> pl.DataFrame:
    if isinstance(value, pl.DataFrame):
        return value
    return pl.DataFrame(list(value or []))


@dataclass
class SqlResult:
    frame: pl.DataFrame | None
    truncated: bool = False
    error: str | None = None


def run_console_query(db_path: str | Path, sql: Any, *, row_cap: int = SQL_MAX_ROWS) -> SqlResult:
    """Run a read-only console query; a refused or failing one comes back as ``error``."""
    text = sql if isinstance(sql, str) else ""
    if not text.strip():
        return SqlResult(None, error="Type a query, or pick an example above.")
    try:
        frame, truncated = run_safe_query(db_path, text, row_cap=row_cap)
    except FactorscopeError as e:
        return SqlResult(None, error=str(e))
    return SqlResult(frame, truncated=bool(truncated))


def analyze_text(analyzer: Any, db_path: str | Path, text: Any, *, top: int = 8) -> dict:
    """Decompose a sentence live, as the compact object the Analyze page draws.

    ``tokens``: one ``{"text", "word", "piece", "cont"}`` per stored token (``text`` the
    piece as written, ``cont`` true for a piece that continues the previous one's word);
    ``layers``: the layer numbers; ``codes[i][t]``: the flat ``[factor, alpha, factor,
    alpha, ...]`` of token ``t`` at ``layers[i]``, largest first; ``labels``: factor
    (a string, JSON keys are strings) -> label, for the factors shown that have one;
    ``read_chars`` / ``n_chars``: how much of the sentence the model read (it stops at
    the run's ``max_length`` pieces) out of how much was typed.
    """
    sentence = text.strip() if isinstance(text, str) else ""
    if not sentence:
        raise InputError("Type a sentence to analyze.")
    if len(sentence) > 2000:
        raise InputError("A sentence can be at most 2000 characters.")
    tokens = analyzer.decompose(sentence, top=int(top))
    layers = sorted({int(lay["layer"]) for tok in tokens for lay in tok["layers"]})
    column = {layer: i for i, layer in enumerate(layers)}
    codes: list[list[list[float]]] = [[[] for _ in tokens] for _ in layers]
    for t, tok in enumerate(tokens):
        for lay in tok["layers"]:
            flat = codes[column[int(lay["layer"])]][t]
            for f, a in lay["factors"]:
                flat += [int(f), round(float(a), 4)]
    wanted = {int(f) for per_layer in codes for flat in per_layer for f in flat[::2]}
    labels = factor_labels(db_path, wanted)
    rows, previous = [], None
    for tok in tokens:
        word_index = tok.get("word_index")
        piece = str(tok.get("piece") or "")
        rows.append(
            {
                "text": str(tok.get("text") or piece or tok.get("word") or ""),
                "word": str(tok.get("word") or ""),
                "piece": piece,
                "cont": word_index is not None and word_index >= 0 and word_index == previous,
            }
        )
        previous = word_index
    ends = [int(tok["end"]) for tok in tokens if tok.get("end") is not None]
    return {
        "tokens": rows,
        "layers": layers,
        "codes": codes,
        "labels": {str(f): label for f, label in sorted(labels.items())},
        "read_chars": max(ends) if ends else len(sentence),
        "n_chars": len(sentence),
        "words": word_occurrences(rows),
        "dictionary": shown_dictionary(db_path),
    }


def word_occurrences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sentence's words for the Analyze page's word-across-layers view: each word
    (lower case) with the token index of the first piece of each of its occurrences;
    repeated words first (the paper's polysemy question: where do the two "bank"s of
    one sentence part?), then the others, each in order of first appearance."""
    found: dict[str, list[int]] = {}
    for t, row in enumerate(rows):
        word = row["word"].strip().lower()
        if word and not row["cont"] and any(ch.isalnum() for ch in word):
            found.setdefault(word, []).append(t)
    words = [{"word": w, "tokens": ts} for w, ts in found.items()]
    return [w for w in words if len(w["tokens"]) > 1] + [w for w in words if len(w["tokens"]) == 1]


def shown_dictionary(db_path: str | Path) -> int:
    """The dictionary this request shows: the one chosen (``?dictionary=N``), else the
    active one, as a number a page can print and put in its links."""
    with _connect(db_path) as con:
        return queries.active_dictionary_id(con)


def factor_labels(db_path: str | Path, factors: set[int]) -> dict[int, str]:
    """Labels of the given factors (those without a label are left out)."""
    if not factors:
        return {}
    with _connect(db_path) as con:
        return queries.factor_labels(con, sorted(factors))


def layer_list(db_path: str | Path) -> list[int]:
    return list(PAGE_CACHE.file_info(db_path).layers)


def frame_to_csv(frame: pl.DataFrame) -> str:
    """CSV text of a query result; nested values (lists, structs) written as text."""
    nested = [
        name for name, dtype in frame.schema.items() if dtype.is_nested() or dtype == pl.Object
    ]
    if nested:
        frame = frame.with_columns(
            pl.col(name).map_elements(str, return_dtype=pl.String) for name in nested
        )
    return frame.write_csv()


# --------------------------------------------------------------------------- compare page

SIDE_CONTEXTS = 8
"""Top contexts shown per factor in the Compare page's side-by-side view."""


def parse_pair(raw_a: Any, raw_b: Any) -> tuple[int | None, int | None]:
    """Dictionary ids ``a`` and ``b`` of a Compare URL (None when absent)."""
    return parse_dictionary(raw_a), parse_dictionary(raw_b)


def compare_overview(db_path: str | Path) -> dict[str, Any]:
    """The dictionaries of the run and the comparisons made (``factorscope compare``)."""
    with WarehouseReader(db_path).connect() as con:
        return {
            "dictionaries": comparisons.dictionary_choices(con),
            "comparisons": comparisons.list_comparisons(con),
        }


def compare_pair(db_path: str | Path, a: int, b: int) -> dict[str, Any]:
    """One comparison: its summary row, matched cosines, pairs and splits.

    :class:`InputError` (naming the command to run) when A and B were not compared.
    """
    with WarehouseReader(db_path).connect() as con:
        row = comparisons.find_comparison(con, a, b)
        cid = row["comparison_id"]
        return {
            "summary": row,
            "cosines": comparisons.matched_cosines(con, cid),
            "matches": comparisons.comparison_matches(con, cid),
            "splits": comparisons.comparison_splits(con, cid),
        }


def _side(db_path: str | Path, dictionary: int, factor: int, encoded: set[int]) -> dict[str, Any]:
    """One factor of one dictionary for the side-by-side view (contexts when encoded)."""
    side: dict[str, Any] = {"dictionary": dictionary, "factor": factor, "encoded": False}
    if dictionary not in encoded:
        return side
    with WarehouseReader(db_path).connect(dictionary) as con:
        page = queries.factor_page(con, factor, top_k=SIDE_CONTEXTS)
    side.update(
        encoded=bool(page["encoded"]),
        layer=page["layer"],
        level=page["level"],
        peak_layer=page["peak_layer"],
        label=page["label"],
        importance=page["importance"],
        top=page.get("top"),
    )
    return side


def compare_factor(db_path: str | Path, a: int, b: int, factor_raw: Any) -> dict[str, Any]:
    """A factor of A and its one-to-one match in B (and its best match), side by side."""
    with WarehouseReader(db_path).connect() as con:
        row = comparisons.find_comparison(con, a, b)
        factor = parse_factor(factor_raw, int(row["n_factors_a"]))
        match = comparisons.match_of(con, row["comparison_id"], "a", factor)
        encoded = {d["dictionary_id"] for d in queries.encoded_dictionaries(con)}
    if match is None:
        raise InputError(f"Factor {factor} of dictionary {a} has no match in {b}.")
    partner = match.get("factor_b", match.get("best"))
    return {
        "factor_a": factor,
        "factor_b": int(partner),
        "matched": "factor_b" in match,
        "cosine": match.get("cosine", match.get("best_cosine")),
        "coactivation": match.get("coactivation"),
        "best": match.get("best"),
        "best_cosine": match.get("best_cosine"),
        "a": _side(db_path, a, factor, encoded),
        "b": _side(db_path, b, int(partner), encoded),
    }


# --------------------------------------------------------------------------- senses page

PROBE_HINT = "run `factorscope probe --corpus wordnet`"
"""What the Senses page and the report tell a user whose run has not been probed."""


@dataclass(frozen=True, eq=False)
class SensesView:
    """What the Senses page shows: the probe averaged over words, and one word's figure."""

    info: dict[str, Any]
    summary: pl.DataFrame
    lemmas: list[str]
    lemma: str | None
    scores: pl.DataFrame
    occurrences: pl.DataFrame
    layers: list[int]


def senses_view(db_path: str | Path, lemma: Any = None) -> SensesView | None:
    """The probe of the active dictionary (None when it has not been probed).

    ``lemma`` picks the word of the figure (default: ``left`` when probed, else the
    first); a word that was not probed is an :class:`InputError` naming some that were.
    """
    from factorscope.warehouse import senses

    with _connect(db_path) as con:
        info = senses.probe_info(con)
        if info is None:
            return None
        dictionary_id = int(info["dictionary_id"])
        summary = senses.probe_summary(con, dictionary_id)
        lemmas = senses.probe_lemmas(con, dictionary_id)["lemma"].to_list()
        chosen = _pick_lemma(lemma, lemmas)
        scores = senses.probe_scores(con, dictionary_id, chosen) if chosen else pl.DataFrame()
        occurrences = (
            senses.lemma_occurrences(con, dictionary_id, chosen) if chosen else pl.DataFrame()
        )
    layers = sorted(set(summary["layer"].to_list())) if summary.height else []
    return SensesView(info, summary, lemmas, chosen, scores, occurrences, layers)


def probed_dictionaries(db_path: str | Path) -> list[int]:
    """The dictionaries with a stored sense probe (the Senses page offers them)."""
    from factorscope.warehouse import senses

    with _connect(db_path) as con:
        return senses.probed_dictionaries(con)


def probe_command(dictionary_id: int) -> str:
    """The command that probes one dictionary, as the Senses page offers it."""
    return f"factorscope probe --corpus wordnet --dictionary {int(dictionary_id)}"


def _pick_lemma(lemma: Any, lemmas: list[str]) -> str | None:
    if lemma is None or (isinstance(lemma, str) and not lemma.strip()):
        if "left" in lemmas:
            return "left"
        return lemmas[0] if lemmas else None
    text = str(lemma).strip().lower()
    if text not in lemmas:
        some = ", ".join(lemmas[:8]) + (", …" if len(lemmas) > 8 else "")
        raise InputError(f"{_short(text)!r} was not probed; probed words: {some}.")
    return text


def sense_groups(occurrences: pl.DataFrame) -> list[dict[str, Any]]:
    """The occurrences of one word grouped by sense, each with its top factor per layer.

    ``[{"sense", "glosses": [...], "rows": [{"text", "start", "end", "synset", "gloss",
    "tops": [(layer, factor | None, alpha | None), ...]}]}]`` in occurrence order.
    """
    groups: dict[str, dict[str, Any]] = {}
    rows: dict[int, dict[str, Any]] = {}
    for r in occurrences.iter_rows(named=True):
        occ = rows.get(r["occurrence"])
        if occ is None:
            occ = {
                "text": r["text"],
                "start": r["word_start"],
                "end": r["word_end"],
                "synset": r["synset"],
                "gloss": r["gloss"],
                "tops": [],
            }
            rows[r["occurrence"]] = occ
            group = groups.setdefault(r["sense"], {"sense": r["sense"], "glosses": [], "rows": []})
            group["rows"].append(occ)
            if r["gloss"] and r["gloss"] not in group["glosses"]:
                group["glosses"].append(r["gloss"])
        occ["tops"].append((r["layer"], r["factor"], r["alpha"]))
    return list(groups.values())
