"""Typed reads for the app and the CLI: polars frames or plain Python values.

Every function takes a read-only connection from :class:`WarehouseReader` (or any
DuckDB connection on a factorscope database), binds its parameters, and validates
what a user can type (a factor number, a layer) with an :class:`InputError` that
says what would have been valid. The writers of the app (:func:`set_label`,
:func:`lime_cache_put`) open their own short write connection on the published file.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import duckdb
import numpy as np
import polars as pl

from factorscope.errors import InputError, WarehouseError
from factorscope.limits import TOP_K
from factorscope.warehouse.connection import connect_raw, file_signature, first_line, gate_of
from factorscope.warehouse.publish import publish_lock
from factorscope.warehouse.summaries import (
    CONTEXT_WORDS,
    DEFAULTS,
    INTERVAL_SEED,
    define_context_macro,
)

Level = Literal["low", "mid", "high"]
LEVELS: tuple[Level, ...] = get_args(Level)
"""Factor levels, by the layer where a factor's importance peaks (the names summaries.py's
level SQL writes)."""

MAX_LABEL_LENGTH = 200

_LOCK_WORDS = ("lock", "conflicting", "different configuration", "resource temporarily")


def _is_lock_error(error: BaseException) -> bool:
    text = str(error).lower()
    return any(word in text for word in _LOCK_WORDS)


# ----------------------------------------------------------------------------- connections


class WarehouseReader:
    """Read-only access to a published database, safe to share between threads.

    :meth:`connect` yields a cursor on one cached read-only connection per file and
    process. Before each read the file's (inode, mtime) is compared with the one the
    connection was opened on; when a writer published a new file (``os.replace``),
    the connection is reopened as soon as no read is using the old one. While
    :func:`set_label` writes, reads wait. Lock conflicts with another process are
    retried a few times before a :class:`WarehouseError`.
    """

    def __init__(self, path: str | Path, *, attempts: int = 8, retry_delay_s: float = 0.05):
        self.path = Path(path)
        self.attempts = attempts
        self.retry_delay_s = retry_delay_s

    def signature(self) -> tuple[int, int] | None:
        """(inode, mtime_ns) of the published file, or None when it is missing."""
        return file_signature(self.path)

    @contextlib.contextmanager
    def connect(self, dictionary_id: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only cursor, closed when the block ends; its public views show
        ``dictionary_id`` (default: the last encoded dictionary), see :func:`use_dictionary`.
        """
        gate = gate_of(self.path)
        with gate.cond:
            while True:
                gate.cond.wait_for(lambda: not gate.writing)
                current = self.signature()
                if current is None:
                    raise WarehouseError(
                        f"no database at {self.path} (run `factorscope ingest` first)"
                    )
                if gate.con is not None and gate.signature == current:
                    break
                if gate.readers == 0:
                    gate.drop()
                    gate.con = self._open()
                    gate.signature = current
                    break
                # A newer file landed: wait for the reads on the old one to finish.
                gate.cond.wait(timeout=0.05)
            gate.readers += 1
            cursor = gate.con.cursor()
        try:
            if dictionary_id is not None:
                use_dictionary(cursor, dictionary_id)
            yield cursor
        except duckdb.Error as e:
            raise WarehouseError(f"query on {self.path} failed: {first_line(e)}") from e
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.close()
            with gate.cond:
                gate.readers -= 1
                gate.cond.notify_all()

    def close(self) -> None:
        """Close the cached connection once no read uses it (it reopens on demand)."""
        gate = gate_of(self.path)
        with gate.cond:
            gate.cond.wait_for(lambda: gate.readers == 0)
            gate.drop()

    def _open(self) -> duckdb.DuckDBPyConnection:
        last: BaseException | None = None
        for attempt in range(self.attempts):
            try:
                return connect_raw(self.path, read_only=True)
            except duckdb.Error as e:
                last = e
                if not _is_lock_error(e) and self.path.exists():
                    raise WarehouseError(
                        f"cannot open database {self.path}: {first_line(e)}"
                    ) from e
                time.sleep(self.retry_delay_s * (attempt + 1))
        if not self.path.exists():
            raise WarehouseError(f"no database at {self.path} (run `factorscope ingest` first)")
        raise WarehouseError(
            f"database {self.path} is locked by a writer; try again in a moment "
            f"({first_line(last) if last else 'locked'})"
        ) from last


@contextlib.contextmanager
def _write_connection(
    db_path: str | Path, *, attempts: int = 20, retry_delay_s: float = 0.05
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short write connection on the published file; this process's reads wait.

    Holds :func:`~factorscope.warehouse.publish.publish_lock` throughout, so a stage
    that publishes meanwhile either carries this write or replaces the file first.
    """
    path = Path(db_path)
    if not path.exists():
        raise WarehouseError(f"no database at {path} (run `factorscope ingest` first)")
    gate = gate_of(path)
    with gate.cond:
        gate.cond.wait_for(lambda: not gate.writing)
        gate.writing = True
        gate.cond.wait_for(lambda: gate.readers == 0)
        gate.drop()
    try:
        with publish_lock(path), _open_for_write(path, attempts, retry_delay_s) as con:
            yield con
    finally:
        with gate.cond:
            gate.writing = False
            gate.cond.notify_all()


@contextlib.contextmanager
def _open_for_write(
    path: Path, attempts: int, retry_delay_s: float
) -> Iterator[duckdb.DuckDBPyConnection]:
    if not path.exists():  # a publish can only replace it, but be plain about a removal
        raise WarehouseError(f"no database at {path} (run `factorscope ingest` first)")
    con = None
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            con = connect_raw(path, read_only=False)
            break
        except duckdb.Error as e:
            last = e
            if not _is_lock_error(e):
                raise WarehouseError(f"cannot open database {path}: {first_line(e)}") from e
            time.sleep(retry_delay_s * (attempt + 1))
    if con is None:
        raise WarehouseError(
            f"database {path} is busy (another process reads or writes it); "
            f"try again in a moment ({first_line(last) if last else 'locked'})"
        ) from last
    try:
        yield con
    except duckdb.Error as e:
        raise WarehouseError(f"write to {path} failed: {first_line(e)}") from e
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()


# ----------------------------------------------------------------------------- helpers


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> list[tuple]:
    try:
        return con.execute(sql, params or []).fetchall()
    except duckdb.Error as e:
        raise WarehouseError(f"warehouse query failed: {first_line(e)}") from e


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> Any:
    rows = _rows(con, sql, params)
    return rows[0][0] if rows else None


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> pl.DataFrame:
    try:
        return con.sql(sql, params=params or None).pl()
    except duckdb.Error as e:
        raise WarehouseError(f"warehouse query failed: {first_line(e)}") from e


def _context_frame(con: duckdb.DuckDBPyConnection, pick: str, params: dict) -> pl.DataFrame:
    """The contexts of the tokens ``pick`` selects (a fixed query of this module)."""
    try:
        define_context_macro(con)
    except duckdb.Error as e:
        raise WarehouseError(f"warehouse query failed: {first_line(e)}") from e
    return _frame(con, _CONTEXTS.format(pick=pick), params)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _meta(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """What the active dictionary's last summary refresh used."""
    return {
        key: json.loads(value)
        for key, value in _rows(
            con,
            "SELECT key, value FROM summary_meta "
            "WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary)",
        )
    }


DICTIONARY_VARIABLE = "fs_dictionary"
"""The DuckDB session variable the ``active_dictionary`` view reads first
(schema/005_dictionary_keys.sql): a reader that sets it sees that dictionary in every
public view; unset, the views show the last encoded dictionary."""


def active_dictionary_id(con: duckdb.DuckDBPyConnection) -> int:
    """The dictionary the public views show on this connection: the one chosen with
    :func:`use_dictionary`, else the last encoded one (else the newest one)."""
    found = _scalar(con, "SELECT dictionary_id FROM active_dictionary")
    if found is None:
        raise WarehouseError("this database holds no dictionary (run `factorscope learn`)")
    return int(found)


def use_dictionary(con: duckdb.DuckDBPyConnection, dictionary_id: int | None) -> None:
    """Show ``dictionary_id`` in the public views of this connection (None: the default).

    Only an encoded dictionary (codes and summaries) can be chosen; anything else is an
    :class:`InputError` that lists the ones that can.
    """
    if dictionary_id is None:
        _rows(con, f"RESET VARIABLE {DICTIONARY_VARIABLE}")
        return
    dictionary_id = _as_int(dictionary_id, "dictionary")
    encoded = [d["dictionary_id"] for d in encoded_dictionaries(con)]
    if dictionary_id not in encoded:
        have = ", ".join(map(str, encoded)) or "none (run `factorscope encode`)"
        raise InputError(f"dictionary {dictionary_id} is not encoded here; encoded: {have}")
    # The variable's name is the module constant above; the value is bound.
    _rows(con, f"SET VARIABLE {DICTIONARY_VARIABLE} = ?", [dictionary_id])


def encoded_dictionaries(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The dictionaries with codes and summaries here (what the app's picker offers),
    oldest first: dictionary_id, n_factors, lambda1, seed, encoded_at, active."""
    rows = _rows(
        con,
        "SELECT d.dictionary_id, d.n_factors, d.lambda1, d.seed, d.encoded_at, "
        "d.dictionary_id = (SELECT dictionary_id FROM active_dictionary) "
        "FROM dictionaries d WHERE d.status = 'encoded' AND EXISTS "
        "(SELECT 1 FROM summary_meta m WHERE m.dictionary_id = d.dictionary_id) "
        "ORDER BY d.dictionary_id",
    )
    names = ("dictionary_id", "n_factors", "lambda1", "seed", "encoded_at", "active")
    return [dict(zip(names, row, strict=True)) for row in rows]


def dictionary_size(con: duckdb.DuckDBPyConnection) -> int:
    """Number of factors of the active dictionary."""
    n = _scalar(
        con,
        "SELECT n_factors FROM dictionaries WHERE dictionary_id = ?",
        [active_dictionary_id(con)],
    )
    return int(n)


def layers(con: duckdb.DuckDBPyConnection) -> list[int]:
    """The hidden-state layers of the run (0 = embeddings), those encoded when known."""
    encoded = _rows(con, "SELECT DISTINCT layer FROM layer_quality ORDER BY layer")
    if encoded:
        return [int(r[0]) for r in encoded]
    n = _scalar(con, "SELECT n_layers FROM runs ORDER BY run_id LIMIT 1")
    if n is None:
        raise WarehouseError("this database holds no ingest run (run `factorscope ingest`)")
    return list(range(int(n)))


def check_factor(con: duckdb.DuckDBPyConnection, factor: Any) -> int:
    """``factor`` as an int, or an :class:`InputError` naming the valid range."""
    factor = _as_int(factor, "factor")
    size = dictionary_size(con)
    if not 0 <= factor < size:
        raise InputError(
            f"factor {factor} does not exist: this dictionary has factors 0..{size - 1}"
        )
    return factor


def check_layer(con: duckdb.DuckDBPyConnection, layer: Any) -> int:
    """``layer`` as an int, or an :class:`InputError` naming the valid layers."""
    layer = _as_int(layer, "layer")
    valid = layers(con)
    if layer not in valid:
        shown = (
            f"{valid[0]}..{valid[-1]}"
            if valid == list(range(valid[0], valid[-1] + 1))
            else (", ".join(map(str, valid)))
        )
        raise InputError(f"layer {layer} does not exist: this run has layers {shown}")
    return layer


# ----------------------------------------------------------------------------- overview


def run_overview(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """What the database holds, for the app's header and `factorscope status`."""
    run = _rows(
        con,
        "SELECT model, corpus, n_sentences, n_tokens, n_layers, hidden_size, ingest_seconds "
        "FROM runs ORDER BY run_id LIMIT 1",
    )
    if not run:
        raise WarehouseError("this database holds no ingest run (run `factorscope ingest`)")
    model, corpus, n_sentences, n_tokens, n_layers, hidden_size, ingest_s = run[0]
    dictionary_id = active_dictionary_id(con)
    n_factors, lambda1, fit_s, status = _rows(
        con,
        "SELECT n_factors, lambda1, fit_seconds, status FROM dictionaries WHERE dictionary_id = ?",
        [dictionary_id],
    )[0]
    encode_s = _scalar(
        con,
        "SELECT coalesce(sum(seconds), 0) FROM encode_chunks WHERE dictionary_id = ?",
        [dictionary_id],
    )
    meta = _meta(con)
    return {
        "model": model,
        "corpus": corpus,
        "n_sentences": int(n_sentences),
        "n_tokens": int(n_tokens),
        "n_layers": int(n_layers),
        "hidden_size": int(hidden_size),
        "n_factors": int(n_factors),
        "lambda1": float(lambda1),
        "dictionary_id": dictionary_id,
        "dictionary_status": status,
        "timings": {
            "ingest_seconds": ingest_s,
            "fit_seconds": fit_s,
            "encode_seconds": float(encode_s),
            "summaries_seconds": meta.get("seconds"),
        },
        "level_counts": level_counts(con),
    }


# ----------------------------------------------------------------------------- contexts

_PICK_TOP = """
SELECT alpha, token_id,
       row_number() OVER (ORDER BY alpha DESC, token_id) AS rank,
       NULL::INTEGER AS interval
FROM codes
WHERE dictionary_id = $d AND factor = $factor AND layer = $layer
QUALIFY rank > $offset AND rank <= $offset + $k
"""

_PICK_INTERVALS = """
WITH ranked AS (
    SELECT alpha, token_id,
           row_number() OVER (ORDER BY alpha DESC, token_id) AS rank,
           max(alpha) OVER () AS top
    FROM codes
    WHERE dictionary_id = $d AND factor = $factor AND layer = $layer
)
SELECT alpha, token_id, rank,
       least(CAST(floor(alpha / top * $n_intervals) AS INTEGER), $n_intervals - 1) AS interval
FROM ranked
QUALIFY row_number() OVER (PARTITION BY interval ORDER BY hash(token_id, $seed), token_id)
        <= $per_interval
"""

# The context of picked tokens, cut by the summaries' macro (summary_sql/context.sql).
_CONTEXTS = """
WITH picked AS ({pick}),
tok AS (
    SELECT p.*, t.sentence_idx, t.word, t.word_start, t.word_end,
           coalesce(t.word_index, t.position) AS wi
    FROM picked p JOIN tokens t USING (token_id)
),
spans AS (
    SELECT tok.token_id, c.ctx_start AS cs, c.ctx_end AS ce
    FROM tok
    JOIN context_spans($context, (SELECT list(DISTINCT sentence_idx) FROM tok)) c
      ON c.sentence_idx = tok.sentence_idx AND c.wi = tok.wi
)
SELECT CAST($factor AS INTEGER) AS factor,
       CAST($layer AS SMALLINT) AS layer,
       CAST(tok.rank AS INTEGER) AS rank,
       tok.alpha,
       tok.token_id,
       tok.sentence_idx,
       tok.word,
       substr(s.text, sp.cs + 1, sp.ce - sp.cs) AS context,
       CAST(tok.word_start - sp.cs AS INTEGER) AS highlight_start,
       CAST(tok.word_end - sp.cs AS INTEGER) AS highlight_end,
       tok.interval
FROM tok
JOIN spans sp USING (token_id)
JOIN sentences s USING (sentence_idx)
ORDER BY tok.interval DESC NULLS LAST, tok.rank
"""

_CONTEXT_COLUMNS = [
    "factor",
    "layer",
    "rank",
    "alpha",
    "token_id",
    "sentence_idx",
    "word",
    "context",
    "highlight_start",
    "highlight_end",
]


def top_contexts(
    con: duckdb.DuckDBPyConnection, factor: int, layer: int, *, k: int = TOP_K, offset: int = 0
) -> pl.DataFrame:
    """The tokens of largest alpha for (factor, layer), ranks offset+1..offset+k.

    Within the materialised top list (``TOP_K`` by default) this reads the
    ``factor_top_contexts`` view; beyond it, the codes themselves (slower).
    """
    factor = check_factor(con, factor)
    layer = check_layer(con, layer)
    k = _as_int(k, "k")
    offset = _as_int(offset, "offset")
    if k < 1 or offset < 0:
        raise InputError(f"k must be positive and offset non-negative, got k={k}, offset={offset}")
    return _top_contexts(con, factor, layer, k, offset, _meta(con).get("top_k", 0))


def _top_contexts(
    con: duckdb.DuckDBPyConnection, factor: int, layer: int, k: int, offset: int, materialised: int
) -> pl.DataFrame:
    if offset + k <= materialised:
        return _frame(
            con,
            "SELECT * FROM factor_top_contexts "
            "WHERE factor = $factor AND layer = $layer AND rank > $offset "
            "AND rank <= $offset + $k ORDER BY rank",
            {"factor": factor, "layer": layer, "offset": offset, "k": k},
        ).select(_CONTEXT_COLUMNS)
    frame = _context_frame(
        con,
        _PICK_TOP,
        {
            "d": active_dictionary_id(con),
            "factor": factor,
            "layer": layer,
            "offset": offset,
            "k": k,
            "context": CONTEXT_WORDS,
        },
    )
    return frame.select(_CONTEXT_COLUMNS)


def interval_samples(
    con: duckdb.DuckDBPyConnection,
    factor: int,
    layer: int,
    *,
    n_intervals: int = 5,
    per_interval: int = 5,
    seed: int = 0,
) -> pl.DataFrame:
    """Contexts sampled from activation intervals (sae_vis style).

    (0, max alpha] is cut into ``n_intervals`` equal intervals; ``interval`` 0 is the
    weakest. From each, ``per_interval`` tokens are drawn by a seeded hash (the same
    call gives the same sample). Rows: the strongest interval first.
    """
    factor = check_factor(con, factor)
    layer = check_layer(con, layer)
    n_intervals = _as_int(n_intervals, "n_intervals")
    per_interval = _as_int(per_interval, "per_interval")
    if not (1 <= n_intervals <= 100 and 1 <= per_interval <= 1000):
        raise InputError("n_intervals must be in 1..100 and per_interval in 1..1000")
    return _interval_samples(con, factor, layer, n_intervals, per_interval, _as_int(seed, "seed"))


def _interval_samples(
    con: duckdb.DuckDBPyConnection,
    factor: int,
    layer: int,
    n_intervals: int,
    per_interval: int,
    seed: int,
) -> pl.DataFrame:
    return _context_frame(
        con,
        _PICK_INTERVALS,
        {
            "d": active_dictionary_id(con),
            "factor": factor,
            "layer": layer,
            "n_intervals": n_intervals,
            "per_interval": per_interval,
            "seed": seed,
            "context": CONTEXT_WORDS,
        },
    )


# ----------------------------------------------------------------------------- factor page


# Over 80 lines: the page's one round trip on purpose (validate once, then a few statements); see
# the docstring.
def factor_page(
    con: duckdb.DuckDBPyConnection,
    factor: int,
    layer: int | None = None,
    *,
    top_k: int = TOP_K,
    bins: int = 30,
    n_intervals: int = DEFAULTS.n_intervals,
    per_interval: int = DEFAULTS.per_interval,
    n_neighbors: int = 10,
) -> dict[str, Any]:
    """Everything the factor page shows, validated once, in a few statements.

    The factor page used to call a dozen functions above, each checking the factor
    and the layer again (two or three statements apiece): about 30 statements per
    view. This checks once and reads the rest in six.

    ``layer`` None means the factor's importance peak (the first layer when it never
    fires). Returns a dict: ``factor``, ``layer``, ``layers`` (all of the run's),
    ``n_factors``, ``dictionary_id``, ``encoded`` (False when the active dictionary has
    no codes yet: nothing else is read then), ``peak_layer`` and ``level`` (None when it
    never fires), ``label`` (the user's, else the automatic one, else None),
    ``user_label`` and ``auto_label`` (each, or None: ``factor_labels``' sources),
    ``importance`` (frame layer, importance: every layer, 0.0 where it never fires),
    ``top`` (the first ``top_k`` of :func:`top_contexts`), ``histogram``
    (:func:`factor_histogram`), ``intervals`` (:func:`interval_samples`, seed 0: as
    the refresh stored them in ``summary_intervals`` when the counts match),
    ``interval_bounds`` (:func:`interval_bounds`: each interval's own bounds and how
    many tokens fall in it) and ``neighbors`` (:func:`factor_neighbors` by cosine).
    """
    factor = _as_int(factor, "factor")
    sizes = {
        "top_k": (_as_int(top_k, "top_k"), 10_000),
        "bins": (_as_int(bins, "bins"), 1000),
        "n_intervals": (_as_int(n_intervals, "n_intervals"), 100),
        "per_interval": (_as_int(per_interval, "per_interval"), 1000),
        "n_neighbors": (_as_int(n_neighbors, "n_neighbors"), 10_000),
    }
    for name, (value, high) in sizes.items():
        if not 1 <= value <= high:
            raise InputError(f"{name} must be in 1..{high}, got {value}")
    dictionary_id = active_dictionary_id(con)
    head = _rows(
        con,
        """
        SELECT (SELECT n_factors FROM dictionaries WHERE dictionary_id = $d),
               (SELECT count(*) FROM layer_quality WHERE dictionary_id = $d),
               (SELECT peak_layer FROM factor_levels WHERE factor = $f),
               (SELECT level FROM factor_levels WHERE factor = $f),
               (SELECT label FROM factor_labels WHERE factor = $f AND source = 'user'),
               (SELECT label FROM factor_labels WHERE factor = $f AND source = 'auto'),
               (SELECT map(list(layer), list(importance))
                  FROM factor_importance WHERE factor = $f),
               (SELECT value FROM summary_meta WHERE key = 'top_k' AND dictionary_id = $d),
               (SELECT value FROM summary_meta WHERE key = 'intervals' AND dictionary_id = $d)
        """,
        {"d": dictionary_id, "f": factor},
    )[0]
    n_factors, n_quality, peak, level, user_label, auto_label, found, materialised, stored = head
    if not 0 <= factor < int(n_factors):
        raise InputError(
            f"factor {factor} does not exist: this dictionary has factors 0..{int(n_factors) - 1}"
        )
    all_layers = layers(con)
    if layer is not None:
        layer = check_layer(con, layer)
    peak = int(peak) if peak is not None else None
    if layer is None:
        layer = peak if peak in all_layers else all_layers[0]
    found = dict(found or {})
    page: dict[str, Any] = {
        "factor": factor,
        "layer": layer,
        "layers": all_layers,
        "n_factors": int(n_factors),
        "dictionary_id": dictionary_id,
        "encoded": bool(n_quality),
        "peak_layer": peak,
        "level": level,
        "label": user_label if user_label is not None else auto_label,
        "user_label": user_label,
        "auto_label": auto_label,
        "importance": pl.DataFrame(
            {
                "layer": all_layers,
                "importance": [float(found.get(x, 0.0)) for x in all_layers],
            },
            schema={"layer": pl.Int64, "importance": pl.Float64},
        ),
    }
    if not page["encoded"]:
        return page
    materialised = int(json.loads(materialised)) if materialised is not None else 0
    page["top"] = _top_contexts(con, factor, layer, int(top_k), 0, materialised)
    page["histogram"], page["interval_bounds"] = _alpha_bins(
        con, factor, layer, int(bins), int(n_intervals)
    )
    if stored is not None and json.loads(stored) == [int(n_intervals), int(per_interval)]:
        page["intervals"] = _frame(
            con,
            "SELECT * EXCLUDE (dictionary_id) FROM factor_intervals "
            "WHERE factor = $factor AND layer = $layer ORDER BY interval DESC, rank",
            {"factor": factor, "layer": layer},
        ).select([*_CONTEXT_COLUMNS, "interval"])
    else:  # other interval counts than the refresh drew: drawn now, by the same rule
        page["intervals"] = _interval_samples(
            con, factor, layer, int(n_intervals), int(per_interval), INTERVAL_SEED
        )
    page["neighbors"] = _neighbors(con, factor, int(n_neighbors))
    return page


# ----------------------------------------------------------------------------- importance


def importance_curve(con: duckdb.DuckDBPyConnection, factor: int) -> pl.DataFrame:
    """IS of ``factor`` at every layer (0.0 where it never fires), columns layer, importance."""
    factor = check_factor(con, factor)
    all_layers = layers(con)
    found = dict(
        _rows(
            con,
            "SELECT layer, importance FROM factor_importance WHERE factor = ?",
            [factor],
        )
    )
    return pl.DataFrame(
        {
            "layer": all_layers,
            "importance": [float(found.get(layer, 0.0)) for layer in all_layers],
        },
        schema={"layer": pl.Int64, "importance": pl.Float64},
    )


def factor_level(con: duckdb.DuckDBPyConnection, factor: int) -> dict | None:
    """{'peak_layer', 'level'} of ``factor``, or None when it never fires."""
    factor = check_factor(con, factor)
    rows = _rows(con, "SELECT peak_layer, level FROM factor_levels WHERE factor = ?", [factor])
    if not rows:
        return None
    return {"peak_layer": int(rows[0][0]), "level": rows[0][1]}


def level_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Number of factors of each level (every level present, zero if none)."""
    found = dict(_rows(con, "SELECT level, count(*) FROM factor_levels GROUP BY level"))
    return {level: int(found.get(level, 0)) for level in LEVELS}


def random_factor(
    con: duckdb.DuckDBPyConnection, level: Level, *, seed: int | None = None
) -> int | None:
    """A random factor of ``level`` (seeded when ``seed`` is given); None if there is none."""
    if level not in LEVELS:
        raise InputError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    factors = [
        r[0]
        for r in _rows(
            con, "SELECT factor FROM factor_levels WHERE level = ? ORDER BY factor", [level]
        )
    ]
    if not factors:
        return None
    return int(random.Random(seed).choice(factors))


# ----------------------------------------------------------------------------- words


def word_factors(
    con: duckdb.DuckDBPyConnection, word: str, *, layer: int | None = None, limit: int = 20
) -> pl.DataFrame:
    """The factors a word activates most (mean alpha over its occurrences), best first."""
    if not isinstance(word, str) or not word.strip():
        raise InputError("word must be a non-empty string")
    limit = _as_int(limit, "limit")
    if limit < 1:
        raise InputError(f"limit must be positive, got {limit}")
    params: dict[str, Any] = {"word": word.strip().lower(), "limit": limit}
    sql = "SELECT word, layer, factor, mean_alpha, hits FROM word_factors WHERE word = $word"
    if layer is not None:
        params["layer"] = check_layer(con, layer)
        sql += " AND layer = $layer"
    sql += " ORDER BY mean_alpha DESC, layer, factor LIMIT $limit"
    return _frame(con, sql, params)


# ----------------------------------------------------------------------------- histograms


def factor_histogram(
    con: duckdb.DuckDBPyConnection, factor: int, layer: int, *, bins: int = 30
) -> pl.DataFrame:
    """Counts of the non-zero alphas in ``bins`` equal bins over (0, max alpha]."""
    factor = check_factor(con, factor)
    layer = check_layer(con, layer)
    bins = _as_int(bins, "bins")
    if not 1 <= bins <= 1000:
        raise InputError(f"bins must be in 1..1000, got {bins}")
    return _histogram(con, factor, layer, bins)


def _histogram(con: duckdb.DuckDBPyConnection, factor: int, layer: int, bins: int) -> pl.DataFrame:
    return _alpha_bins(con, factor, layer, bins, 1)[0]


def interval_bounds(
    con: duckdb.DuckDBPyConnection, factor: int, layer: int, *, n_intervals: int = 5
) -> list[dict[str, Any]]:
    """The activation intervals of (factor, layer) that :func:`interval_samples` draws
    from: ``{"interval", "alpha_low", "alpha_high", "count"}`` for each of the
    ``n_intervals`` (weakest first; empty when the factor never fires there).

    Interval ``i`` holds the α with ``floor(α / max α · n) = i`` (the strongest also
    holds max α): ``[alpha_low, alpha_high)``, the last one closed; ``count`` is how
    many tokens fall in it.
    """
    factor = check_factor(con, factor)
    layer = check_layer(con, layer)
    n_intervals = _as_int(n_intervals, "n_intervals")
    if not 1 <= n_intervals <= 100:
        raise InputError(f"n_intervals must be in 1..100, got {n_intervals}")
    return _alpha_bins(con, factor, layer, 1, n_intervals)[1]


def _alpha_bins(
    con: duckdb.DuckDBPyConnection, factor: int, layer: int, bins: int, n_intervals: int
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """(histogram of ``bins`` bins, bounds of ``n_intervals`` intervals) of the non-zero
    α of (factor, layer), both cut from (0, max α] by the summaries' rule, in one scan."""
    rows = _rows(
        con,
        """
        WITH a AS (
            SELECT alpha FROM codes
            WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary)
              AND factor = $factor AND layer = $layer
        ),
             m AS (SELECT max(alpha) AS top FROM a)
        SELECT least(CAST(floor(a.alpha / m.top * $bins) AS INTEGER), $bins - 1) AS b,
               least(CAST(floor(a.alpha / m.top * $n) AS INTEGER), $n - 1) AS i,
               count(*) AS n, any_value(m.top) AS top
        FROM a, m
        GROUP BY b, i
        """,
        {"factor": factor, "layer": layer, "bins": bins, "n": n_intervals},
    )
    schema = {"bin_low": pl.Float64, "bin_high": pl.Float64, "count": pl.Int64}
    if not rows:
        return pl.DataFrame(schema=schema), []
    top = float(rows[0][3])
    counts = np.zeros(bins, dtype=np.int64)
    in_interval = np.zeros(n_intervals, dtype=np.int64)
    for b, i, n, _ in rows:
        counts[int(b)] += n
        in_interval[int(i)] += n
    edges = np.linspace(0.0, top, bins + 1)
    histogram = pl.DataFrame(
        {"bin_low": edges[:-1], "bin_high": edges[1:], "count": counts}, schema=schema
    )
    cuts = np.linspace(0.0, top, n_intervals + 1)
    bounds = [
        {
            "interval": i,
            "alpha_low": float(cuts[i]),
            "alpha_high": float(cuts[i + 1]),
            "count": int(in_interval[i]),
        }
        for i in range(n_intervals)
    ]
    return histogram, bounds


# ----------------------------------------------------------------------------- neighbours


def factor_neighbors(
    con: duckdb.DuckDBPyConnection,
    factor: int,
    *,
    limit: int = 10,
    by: Literal["cosine", "coactivation"] = "cosine",
) -> pl.DataFrame:
    """Nearest factors by atom cosine (or by co-activation), columns neighbor, cosine,
    coactivation."""
    factor = check_factor(con, factor)
    limit = _as_int(limit, "limit")
    order = {
        "cosine": _BY_COSINE,
        "coactivation": "coactivation DESC, cosine DESC, neighbor",
    }
    if by not in order:
        raise InputError(f"by must be 'cosine' or 'coactivation', got {by!r}")
    return _neighbors(con, factor, limit, order[by])


_BY_COSINE = "cosine DESC, neighbor"


def _neighbors(
    con: duckdb.DuckDBPyConnection, factor: int, limit: int, order: str = _BY_COSINE
) -> pl.DataFrame:
    # ``order`` is one of factor_neighbors' allow-listed ORDER BY clauses.
    return _frame(
        con,
        "SELECT neighbor, cosine, coactivation FROM factor_neighbors WHERE factor = $factor "
        f"ORDER BY {order} LIMIT $limit",
        {"factor": factor, "limit": limit},
    )


# ----------------------------------------------------------------------------- labels


def factor_label(con: duckdb.DuckDBPyConnection, factor: int) -> dict | None:
    """{'factor', 'label', 'source', 'auto_label'}: the user's label, else the automatic one."""
    factor = check_factor(con, factor)
    found = dict(
        (source, label)
        for label, source in _rows(
            con, "SELECT label, source FROM factor_labels WHERE factor = ?", [factor]
        )
    )
    if not found:
        return None
    source = "user" if "user" in found else "auto"
    return {
        "factor": factor,
        "label": found[source],
        "source": source,
        "auto_label": found.get("auto"),
    }


def factor_labels(con: duckdb.DuckDBPyConnection, factors: list[int]) -> dict[int, str]:
    """{factor: label} of the given factors in one query: the user's label, else the
    automatic one; factors without either are left out."""
    ids = [_as_int(f, "factor") for f in factors]
    if not ids:
        return {}
    rows = _rows(
        con,
        "SELECT factor, arg_min(label, CASE source WHEN 'user' THEN 0 ELSE 1 END) "
        "FROM factor_labels WHERE list_contains(?, factor) GROUP BY factor",
        [ids],
    )
    return {int(factor): label for factor, label in rows}


def search_labels(con: duckdb.DuckDBPyConnection, text: str, *, limit: int = 20) -> pl.DataFrame:
    """Factors whose user or automatic label contains ``text`` (case-insensitive)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("search text must be a non-empty string")
    limit = _as_int(limit, "limit")
    return _frame(
        con,
        "SELECT factor, label, source FROM factor_labels "
        "WHERE contains(lower(label), lower($text)) "
        "ORDER BY source = 'user' DESC, factor LIMIT $limit",
        {"text": text.strip(), "limit": limit},
    )


def set_label(
    db_path: str | Path, factor: int, label: str, *, dictionary_id: int | None = None
) -> None:
    """Save (or, with an empty label, delete) the user's label of ``factor`` of a
    dictionary (default: the active one); a label stays with its dictionary.

    Writes the published file directly in a short transaction; a running writer
    carries the label into its staging copy when it publishes.
    """
    if not isinstance(label, str):
        raise InputError(f"label must be a string, got {label!r}")
    label = " ".join(label.split())
    if len(label) > MAX_LABEL_LENGTH:
        raise InputError(
            f"label is too long ({len(label)} > {MAX_LABEL_LENGTH} characters): shorten it"
        )
    with _write_connection(db_path) as con:
        use_dictionary(con, dictionary_id)
        factor = check_factor(con, factor)
        dictionary_id = active_dictionary_id(con)
        if label:
            con.execute(
                "INSERT OR REPLACE INTO user_labels (dictionary_id, factor, label, updated_at) "
                "VALUES (?, ?, ?, current_timestamp)",
                [dictionary_id, factor, label],
            )
        else:
            con.execute(
                "DELETE FROM user_labels WHERE dictionary_id = ? AND factor = ?",
                [dictionary_id, factor],
            )


# ----------------------------------------------------------------------------- quality


def corpus_report(con: duckdb.DuckDBPyConnection) -> dict | None:
    """What the ingest did not store, by reason (None for a run made before it was
    counted): ``{"segments", "resplit", "resplit_into", "dropped": {reason: [n, words]}}``
    (``store.write_corpus_report`` writes it)."""
    run = _rows(con, "SELECT n_segments, n_resplit, n_resplit_into FROM runs LIMIT 1")
    if not run or run[0][0] is None:
        return None
    segments, resplit, resplit_into = run[0]
    dropped = {
        reason: [n, words]
        for reason, n, words in _rows(
            con, "SELECT reason, sentences, words FROM ingest_drops ORDER BY sentences DESC"
        )
    }
    return {
        "segments": segments,
        "resplit": resplit,
        "resplit_into": resplit_into,
        "dropped": dropped,
    }


def layer_quality(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per-layer reconstruction quality of the active dictionary, by layer."""
    return _frame(
        con,
        "SELECT layer, n_vectors, fvu, mean_l0, zero_code_share, dead_factors, lambda1 "
        "FROM layer_quality WHERE dictionary_id = $d ORDER BY layer",
        {"d": active_dictionary_id(con)},
    )


# ----------------------------------------------------------------------------- LIME


def lime_cache_get(con: duckdb.DuckDBPyConnection, key: str) -> dict | None:
    """A cached LIME explanation (``result`` parsed back from JSON), or None."""
    rows = _rows(
        con,
        "SELECT key, factor, layer, sentence_idx, word_index, n_samples, result, created_at "
        "FROM lime_cache WHERE key = ?",
        [str(key)],
    )
    if not rows:
        return None
    names = [
        "key",
        "factor",
        "layer",
        "sentence_idx",
        "word_index",
        "n_samples",
        "result",
        "created_at",
    ]
    record = dict(zip(names, rows[0], strict=True))
    record["result"] = json.loads(record["result"])
    return record


def lime_cache_put(
    db_path: str | Path,
    key: str,
    *,
    factor: int,
    layer: int,
    sentence_idx: int | None,
    word_index: int,
    n_samples: int,
    result: dict,
    dictionary_id: int | None = None,
) -> None:
    """Store a LIME explanation under ``key`` (replacing an older one); the key names the
    dictionary (``saliency.cache_key``), and so does the row (default: the active one)."""
    payload = json.dumps(result, sort_keys=True)
    with _write_connection(db_path) as con:
        use_dictionary(con, dictionary_id)
        factor = check_factor(con, factor)
        layer = check_layer(con, layer)
        con.execute(
            "INSERT OR REPLACE INTO lime_cache (key, dictionary_id, factor, layer, "
            "sentence_idx, word_index, n_samples, result, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
            [
                str(key),
                active_dictionary_id(con),
                factor,
                layer,
                None if sentence_idx is None else _as_int(sentence_idx, "sentence_idx"),
                _as_int(word_index, "word_index"),
                _as_int(n_samples, "n_samples"),
                payload,
            ],
        )


def token_context(con: duckdb.DuckDBPyConnection, sentence_idx: int) -> dict:
    """One sentence's text and stored tokens (for LIME and the context pages)."""
    sentence_idx = _as_int(sentence_idx, "sentence_idx")
    text = _rows(con, "SELECT text FROM sentences WHERE sentence_idx = ?", [sentence_idx])
    if not text:
        n = _scalar(con, "SELECT count(*) FROM sentences")
        raise InputError(
            f"sentence {sentence_idx} does not exist: this corpus has sentences 0..{n - 1}"
        )
    tokens = _frame(
        con,
        "SELECT token_id, position, piece, word, word_index, char_start, char_end, "
        "word_start, word_end FROM tokens WHERE sentence_idx = $s ORDER BY position",
        {"s": sentence_idx},
    )
    return {"sentence_idx": sentence_idx, "text": text[0][0], "tokens": tokens.to_dicts()}


def sentences(con: duckdb.DuckDBPyConnection, sentence_ids: list[int]) -> dict[int, dict]:
    """:func:`token_context` of several sentences in two statements: {sentence_idx: dict}."""
    ids = sorted({_as_int(i, "sentence_idx") for i in sentence_ids})
    if not ids:
        return {}
    texts = dict(
        _rows(
            con,
            "SELECT sentence_idx, text FROM sentences WHERE list_contains(?, sentence_idx)",
            [ids],
        )
    )
    missing = [i for i in ids if i not in texts]
    if missing:
        n = _scalar(con, "SELECT count(*) FROM sentences")
        raise InputError(
            f"sentence {missing[0]} does not exist: this corpus has sentences 0..{n - 1}"
        )
    tokens = _frame(
        con,
        "SELECT sentence_idx, token_id, position, piece, word, word_index, char_start, "
        "char_end, word_start, word_end FROM tokens WHERE list_contains($ids, sentence_idx) "
        "ORDER BY sentence_idx, position",
        {"ids": ids},
    )
    out: dict[int, dict] = {i: {"sentence_idx": i, "text": texts[i], "tokens": []} for i in ids}
    for row in tokens.iter_rows(named=True):
        out[int(row.pop("sentence_idx"))]["tokens"].append(row)
    return out


# ----------------------------------------------------------------------------- report


def code_counts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per layer: active factors and non-zero codes, columns layer, active_factors, non_zeros."""
    return _frame(
        con,
        "SELECT CAST(layer AS INTEGER) AS layer, count(DISTINCT factor) AS active_factors, "
        "count(*) AS non_zeros FROM codes WHERE dictionary_id = $d GROUP BY layer ORDER BY layer",
        {"d": active_dictionary_id(con)},
    )


def active_factor_count(con: duckdb.DuckDBPyConnection) -> int:
    """Number of factors with at least one non-zero code at any layer."""
    return int(
        _scalar(
            con,
            "SELECT count(DISTINCT factor) FROM codes WHERE dictionary_id = ?",
            [active_dictionary_id(con)],
        )
        or 0
    )


def level_factors(con: duckdb.DuckDBPyConnection, level: Level) -> pl.DataFrame:
    """Factors of ``level`` with their peak: columns factor, peak_layer, importance (at the
    peak), strongest first (ties: the smaller factor)."""
    if level not in LEVELS:
        raise InputError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    return _frame(
        con,
        "SELECT v.factor, CAST(v.peak_layer AS INTEGER) AS peak_layer, i.importance "
        "FROM factor_levels v "
        "JOIN factor_importance i ON i.factor = v.factor AND i.layer = v.peak_layer "
        "WHERE v.level = $level ORDER BY i.importance DESC, v.factor",
        {"level": level},
    )


def word_top_factors(con: duckdb.DuckDBPyConnection, word: str, layer: int) -> pl.DataFrame:
    """The strongest factor at each occurrence of ``word`` (lower-cased) at ``layer``.

    One row per occurrence (the word's first piece): token_id, factor, alpha; factor and
    alpha are null where no factor fires. Ties: the smaller factor.
    """
    if not isinstance(word, str) or not word.strip():
        raise InputError("word must be a non-empty string")
    layer = check_layer(con, layer)
    return _frame(
        con,
        """
        WITH occ AS (
            SELECT token_id FROM tokens
            WHERE lower(word) = $word AND char_start = word_start
        ),
        best AS (
            SELECT c.token_id, c.factor, c.alpha
            FROM codes c JOIN occ USING (token_id)
            WHERE c.dictionary_id = $d AND c.layer = $layer
            QUALIFY row_number() OVER (
                PARTITION BY c.token_id ORDER BY c.alpha DESC, c.factor) = 1
        )
        SELECT o.token_id, b.factor, b.alpha
        FROM occ o LEFT JOIN best b USING (token_id)
        ORDER BY o.token_id
        """,
        {"word": word.strip().lower(), "layer": layer, "d": active_dictionary_id(con)},
    )


def word_top_factor_spread(
    con: duckdb.DuckDBPyConnection, layer: int, *, min_occurrences: int = 20
) -> pl.DataFrame:
    """For every word (lower-cased, first piece) with at least ``min_occurrences``
    occurrences: how its occurrences' top factors at ``layer`` spread.

    Columns word, occurrences, fired (occurrences where some factor fires), distinct_top
    (number of different top factors), top_count (occurrences of the most common one).
    """
    layer = check_layer(con, layer)
    min_occurrences = _as_int(min_occurrences, "min_occurrences")
    if min_occurrences < 1:
        raise InputError(f"min_occurrences must be positive, got {min_occurrences}")
    return _frame(
        con,
        """
        WITH occ AS (
            SELECT token_id, lower(word) AS word FROM tokens WHERE char_start = word_start
        ),
        frequent AS (
            SELECT word FROM occ GROUP BY word HAVING count(*) >= $min_occurrences
        ),
        best AS (
            SELECT token_id, factor FROM codes
            WHERE dictionary_id = $d AND layer = $layer
            QUALIFY row_number() OVER (PARTITION BY token_id ORDER BY alpha DESC, factor) = 1
        ),
        joined AS (
            SELECT o.word, o.token_id, b.factor
            FROM occ o JOIN frequent USING (word) LEFT JOIN best b USING (token_id)
        ),
        per_factor AS (
            SELECT word, factor, count(*) AS n FROM joined
            WHERE factor IS NOT NULL GROUP BY ALL
        ),
        spread AS (
            SELECT word, count(*) AS distinct_top, max(n) AS top_count
            FROM per_factor GROUP BY word
        )
        SELECT j.word, count(*) AS occurrences, count(j.factor) AS fired,
               coalesce(any_value(s.distinct_top), 0) AS distinct_top,
               coalesce(any_value(s.top_count), 0) AS top_count
        FROM joined j LEFT JOIN spread s USING (word)
        GROUP BY j.word
        ORDER BY occurrences DESC, j.word
        """,
        {"layer": layer, "min_occurrences": min_occurrences, "d": active_dictionary_id(con)},
    )
