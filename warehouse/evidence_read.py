"""Reads of the evidence tables (schema/007_evidence.sql) for the app and the report.

``factorscope explain`` fills ``explanations`` (the best short rule of each factor at
each layer, fitted on training sentences) and ``explanation_scores`` (that rule scored
on held-out sentences) for a dictionary and its controls (``dictionaries.kind =
'control'``, ``parent_id`` the dictionary they are controls of). These readers take a
read-only connection from :class:`~factorscope.warehouse.queries.WarehouseReader` (or
any connection on a factorscope database), name the dictionary they read explicitly
(never the ``active_dictionary`` view: a page shows a dictionary and its controls side
by side), and answer "nothing yet" (None, an empty list or frame) on a database made
before the evidence tables existed, opened read-only and so never migrated.

The claims built on these rows (means, intervals, verdicts) are computed above the
warehouse, in ``factorscope.evidence.claims``.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import polars as pl

from factorscope.errors import InputError
from factorscope.warehouse.explanations import EXPLANATION_COLUMNS, SCORE_COLUMNS
from factorscope.warehouse.queries import _as_int, _frame, _rows

WORD_LEVEL_DETECTION = 0.8
"""Held-out detection a one-term ``word`` or ``lemma`` rule needs for its factor to be
counted word-level (the paper's word factors). The same number as
``factorscope.evidence.claims.WORD_LEVEL_DETECTION``, which callers pass in."""

WORD_FAMILIES = ("word", "lemma")

# layer, then every column the explain stage writes (warehouse/explanations.py), factor once
_EXPLANATION_COLUMNS = ("layer", *EXPLANATION_COLUMNS, *SCORE_COLUMNS[1:])

_EXPLANATION_SQL = """
SELECT CAST(e.layer AS INTEGER) AS layer, e.factor, e.explained, e.text,
       CAST(e.rule AS VARCHAR) AS rule, e.rule_kind, e.n_terms, e.n_active_train,
       e.train_detection, s.n_active, s.n_inactive, s.detection, s.detection_low,
       s.detection_high, s.detection_top, s.auroc, s.precision, s.n_sentences,
       s.localisation, s.localisation_chance
FROM explanations e
LEFT JOIN explanation_scores s
  ON s.dictionary_id = e.dictionary_id AND s.layer = e.layer AND s.factor = e.factor
WHERE e.dictionary_id = $d AND e.factor = $f
"""


# ----------------------------------------------------------------------------- presence


def has_evidence_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """True when this database has the evidence tables and the dictionaries' kind (a
    file migrated to schema 7); a file made before, opened read-only, has not."""
    found = _rows(
        con,
        "SELECT (SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "        AND table_name IN ('explanations', 'explanation_scores', 'explain_layers')), "
        "       (SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
        "        AND table_name = 'dictionaries' AND column_name IN ('kind', 'parent_id'))",
    )[0]
    return found == (3, 2)


def dictionary_info(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> dict[str, Any] | None:
    """``{"dictionary_id", "n_factors", "kind", "parent_id", "source", "status",
    "summarised"}`` of one dictionary (None when it does not exist). ``kind`` is
    'learned', 'imported' or 'control' ('learned' on a file made before kinds)."""
    dictionary_id = _as_int(dictionary_id, "dictionary")
    if has_evidence_tables(con):
        sql = (
            "SELECT dictionary_id, n_factors, coalesce(kind, 'learned'), parent_id, source, "
            "status, EXISTS (SELECT 1 FROM summary_meta m WHERE m.dictionary_id = d.dictionary_id) "
            "FROM dictionaries d WHERE dictionary_id = ?"
        )
    else:
        sql = (
            "SELECT dictionary_id, n_factors, 'learned', NULL, source, status, "
            "EXISTS (SELECT 1 FROM summary_meta m WHERE m.dictionary_id = d.dictionary_id) "
            "FROM dictionaries d WHERE dictionary_id = ?"
        )
    rows = _rows(con, sql, [dictionary_id])
    if not rows:
        return None
    names = ("dictionary_id", "n_factors", "kind", "parent_id", "source", "status", "summarised")
    return dict(zip(names, rows[0], strict=True))


def dictionary_controls(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> list[dict[str, Any]]:
    """The encoded controls of a dictionary (codes and summaries), oldest first:
    ``{"dictionary_id", "n_factors", "lambda1", "seed", "control_kind", "explained"}``;
    ``control_kind`` is how its atoms were drawn ('gaussian', 'sample-atoms'),
    ``explained`` whether ``factorscope explain`` scored it at any layer."""
    dictionary_id = _as_int(dictionary_id, "dictionary")
    if not has_evidence_tables(con):
        return []
    rows = _rows(
        con,
        """
        SELECT d.dictionary_id, d.n_factors, d.lambda1, d.seed,
               CASE WHEN starts_with(d.source, 'control:') THEN substr(d.source, 9)
                    ELSE d.source END AS control_kind,
               EXISTS (SELECT 1 FROM explain_layers x WHERE x.dictionary_id = d.dictionary_id)
        FROM dictionaries d
        WHERE d.kind = 'control' AND d.parent_id = ? AND d.status = 'encoded'
          AND EXISTS (SELECT 1 FROM summary_meta m WHERE m.dictionary_id = d.dictionary_id)
        ORDER BY d.dictionary_id
        """,
        [dictionary_id],
    )
    names = ("dictionary_id", "n_factors", "lambda1", "seed", "control_kind", "explained")
    return [dict(zip(names, row, strict=True)) for row in rows]


def explained_layers(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> list[int]:
    """The layers ``factorscope explain`` finished for a dictionary (empty: not explained)."""
    dictionary_id = _as_int(dictionary_id, "dictionary")
    if not has_evidence_tables(con):
        return []
    rows = _rows(
        con,
        "SELECT DISTINCT layer FROM explain_layers WHERE dictionary_id = ? ORDER BY layer",
        [dictionary_id],
    )
    return [int(r[0]) for r in rows]


def explained_dictionaries(con: duckdb.DuckDBPyConnection) -> list[int]:
    """The dictionaries other than controls that ``factorscope explain`` scored."""
    if not has_evidence_tables(con):
        return []
    rows = _rows(
        con,
        "SELECT DISTINCT x.dictionary_id FROM explain_layers x "
        "JOIN dictionaries d USING (dictionary_id) "
        "WHERE coalesce(d.kind, 'learned') <> 'control' ORDER BY x.dictionary_id",
    )
    return [int(r[0]) for r in rows]


# ----------------------------------------------------------------------------- one factor


def factor_explanation(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, factor: int, layer: int
) -> dict[str, Any] | None:
    """The explanation of (factor, layer) of a dictionary and its held-out scores, or
    None when that layer was not explained.

    Keys: ``layer``, ``factor``, ``explained`` (False: ``text`` says why: "too rare to
    explain", "no short rule explains it"), ``text``, ``rule`` (a list of
    ``{"feature", "value"}``, or None), ``rule_kind``, ``n_terms``, ``n_active_train``,
    ``train_detection``, and from the held-out sentences (None when not scored there)
    ``n_active``, ``n_inactive``, ``detection`` with ``detection_low`` /
    ``detection_high`` (95%), ``detection_top`` (strongest quintile), ``auroc``,
    ``precision``, ``n_sentences``, ``localisation`` and ``localisation_chance``.
    """
    dictionary_id = _as_int(dictionary_id, "dictionary")
    factor = _as_int(factor, "factor")
    layer = _as_int(layer, "layer")
    if not has_evidence_tables(con):
        return None
    rows = _rows(
        con,
        _EXPLANATION_SQL + " AND e.layer = $l",
        {"d": dictionary_id, "f": factor, "l": layer},
    )
    return _explanation(rows[0]) if rows else None


def factor_explanations(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, factor: int
) -> list[dict[str, Any]]:
    """:func:`factor_explanation` of one factor at every explained layer, by layer."""
    dictionary_id = _as_int(dictionary_id, "dictionary")
    factor = _as_int(factor, "factor")
    if not has_evidence_tables(con):
        return []
    rows = _rows(con, _EXPLANATION_SQL + " ORDER BY e.layer", {"d": dictionary_id, "f": factor})
    return [_explanation(row) for row in rows]


def _explanation(row: tuple) -> dict[str, Any]:
    found = dict(zip(_EXPLANATION_COLUMNS, row, strict=True))
    found["rule"] = json.loads(found["rule"]) if found["rule"] else None
    return found


def factor_evidence(
    con: duckdb.DuckDBPyConnection,
    dictionary_id: int,
    factor: int,
    layer: int,
    *,
    peak_layer: int | None = None,
) -> dict[str, Any]:
    """What the factor page shows of the evidence, in four statements: ``{"kind",
    "parent_id"`` (of the dictionary), ``"explained_layers"`` (:func:`explained_layers`),
    ``"explanation"`` (:func:`factor_explanation` at ``layer``), ``"peak_explanation"``
    (the same at ``peak_layer``, None when not given or not explained), ``"controls"}``
    (:func:`control_detection` at ``layer``)."""
    dictionary_id = _as_int(dictionary_id, "dictionary")
    factor = _as_int(factor, "factor")
    layer = _as_int(layer, "layer")
    peak = None if peak_layer is None else _as_int(peak_layer, "peak_layer")
    out: dict[str, Any] = {
        "kind": "learned",
        "parent_id": None,
        "explained_layers": [],
        "explanation": None,
        "peak_explanation": None,
        "controls": _no_controls([]),
    }
    if not has_evidence_tables(con):
        return out
    head = _rows(
        con,
        """
        SELECT coalesce(d.kind, 'learned'), d.parent_id,
               (SELECT list(DISTINCT x.layer ORDER BY x.layer) FROM explain_layers x
                WHERE x.dictionary_id = $d),
               (SELECT list(c.dictionary_id ORDER BY c.dictionary_id) FROM dictionaries c
                WHERE c.kind = 'control' AND c.parent_id = $d AND c.status = 'encoded'
                  AND EXISTS (SELECT 1 FROM summary_meta m
                              WHERE m.dictionary_id = c.dictionary_id))
        FROM dictionaries d WHERE d.dictionary_id = $d
        """,
        {"d": dictionary_id},
    )
    if not head:
        return out
    kind, parent, explained, controls = head[0]
    out.update(kind=kind, parent_id=parent, explained_layers=[int(x) for x in explained or []])
    if out["explained_layers"]:
        wanted = sorted({layer} | ({peak} if peak is not None else set()))
        found = {
            row["layer"]: row
            for row in map(
                _explanation,
                _rows(
                    con,
                    _EXPLANATION_SQL + " AND list_contains($layers, e.layer)",
                    {"d": dictionary_id, "f": factor, "layers": wanted},
                ),
            )
        }
        out["explanation"] = found.get(layer)
        best = found.get(peak) if peak is not None else None
        out["peak_explanation"] = best if best is not None and best["explained"] else None
    out["controls"] = _control_detection(con, [int(c) for c in controls or []], layer)
    return out


def _no_controls(controls: list[int]) -> dict[str, Any]:
    return {
        "controls": controls,
        "explained": [],
        "n_scored": 0,
        "median": None,
        "p95": None,
        "mean": None,
    }


def control_detection(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, layer: int
) -> dict[str, Any]:
    """The held-out detection of the factors of a dictionary's controls at ``layer``:
    ``{"controls"`` (ids of its encoded controls), ``"explained"`` (those scored at this
    layer), ``"n_scored"`` (factor-layers with a detection, all controls pooled),
    ``"median"``, ``"p95"`` (95th percentile, interpolated), ``"mean"}`` (None when
    nothing was scored)."""
    dictionary_id = _as_int(dictionary_id, "dictionary")
    layer = _as_int(layer, "layer")
    controls = [c["dictionary_id"] for c in dictionary_controls(con, dictionary_id)]
    return _control_detection(con, controls, layer)


def _control_detection(
    con: duckdb.DuckDBPyConnection, controls: list[int], layer: int
) -> dict[str, Any]:
    out = _no_controls(controls)
    if not controls:
        return out
    rows = _rows(
        con,
        """
        SELECT list(DISTINCT dictionary_id ORDER BY dictionary_id), count(detection),
               quantile_cont(detection, 0.5), quantile_cont(detection, 0.95), avg(detection)
        FROM explanation_scores
        WHERE list_contains($ids, dictionary_id) AND layer = $l
        """,
        {"ids": controls, "l": layer},
    )
    explained, n, median, p95, mean = rows[0]
    out.update(
        explained=[int(d) for d in explained or []],
        n_scored=int(n or 0),
        median=median,
        p95=p95,
        mean=mean,
    )
    return out


# ----------------------------------------------------------------------------- per layer


def scored_factors(
    con: duckdb.DuckDBPyConnection,
    dictionary_ids: list[int],
    *,
    word_level_at: float = WORD_LEVEL_DETECTION,
) -> pl.DataFrame:
    """Every scored factor-layer (held-out detection not null) of the given
    dictionaries: columns ``dictionary_id``, ``layer``, ``factor``, ``detection``,
    ``explained``, ``rule_kind``, ``n_terms``, ``word_level`` (its rule is one term of
    family word or lemma with detection >= ``word_level_at``) and ``level`` (the
    factor's IS peak level in that dictionary: 'low', 'mid', 'high'; null when it has
    none), ordered by dictionary, layer, factor.
    """
    ids = [_as_int(d, "dictionary") for d in dictionary_ids]
    if not isinstance(word_level_at, int | float) or not 0 <= word_level_at <= 1:
        raise InputError(f"word_level_at must be in 0..1, got {word_level_at!r}")
    schema = {
        "dictionary_id": pl.Int32,
        "layer": pl.Int32,
        "factor": pl.Int32,
        "detection": pl.Float64,
        "explained": pl.Boolean,
        "rule_kind": pl.String,
        "n_terms": pl.Int32,
        "word_level": pl.Boolean,
        "level": pl.String,
    }
    if not ids or not has_evidence_tables(con):
        return pl.DataFrame(schema=schema)
    frame = _frame(
        con,
        """
        SELECT s.dictionary_id, CAST(s.layer AS INTEGER) AS layer, s.factor, s.detection,
               e.explained, e.rule_kind, e.n_terms,
               coalesce(e.n_terms = 1 AND list_contains($families, e.rule_kind)
                        AND s.detection >= $at, false) AS word_level,
               l.level
        FROM explanation_scores s
        JOIN explanations e
          ON e.dictionary_id = s.dictionary_id AND e.layer = s.layer AND e.factor = s.factor
        LEFT JOIN summary_levels l ON l.dictionary_id = s.dictionary_id AND l.factor = s.factor
        WHERE list_contains($ids, s.dictionary_id) AND s.detection IS NOT NULL
        ORDER BY s.dictionary_id, s.layer, s.factor
        """,
        {"ids": ids, "families": list(WORD_FAMILIES), "at": float(word_level_at)},
    )
    return frame.cast(schema) if frame.height else pl.DataFrame(schema=schema)


def level_counts(con: duckdb.DuckDBPyConnection, dictionary_ids: list[int]) -> pl.DataFrame:
    """Factors of each IS peak level of the given dictionaries (every factor that fires):
    columns ``dictionary_id``, ``level``, ``n_factors``."""
    ids = [_as_int(d, "dictionary") for d in dictionary_ids]
    return _frame(
        con,
        "SELECT dictionary_id, level, count(*) AS n_factors FROM summary_levels "
        "WHERE list_contains($ids, dictionary_id) GROUP BY ALL ORDER BY dictionary_id, level",
        {"ids": ids},
    )


def quality_beside_controls(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> pl.DataFrame:
    """``layer_quality`` (FVU, mean L0) of a dictionary and of each of its encoded
    controls: columns ``dictionary_id``, ``role`` ('dictionary' or 'control'), ``layer``,
    ``fvu``, ``mean_l0``, ``lambda1``; the dictionary first, then its controls, by layer."""
    dictionary_id = _as_int(dictionary_id, "dictionary")
    ids = [dictionary_id] + [c["dictionary_id"] for c in dictionary_controls(con, dictionary_id)]
    return _frame(
        con,
        """
        SELECT dictionary_id,
               CASE WHEN dictionary_id = $d THEN 'dictionary' ELSE 'control' END AS role,
               CAST(layer AS INTEGER) AS layer, fvu, mean_l0, lambda1
        FROM layer_quality
        WHERE list_contains($ids, dictionary_id)
        ORDER BY dictionary_id <> $d, dictionary_id, layer
        """,
        {"d": dictionary_id, "ids": ids},
    )
