"""The comparison tables (schema/004_comparisons.sql): one writer, typed readers.

``factorscope compare A B`` computes the numbers (``sparse.compare``, arrays only) and
hands them here as Arrow tables; :func:`write_comparison` replaces the pair's earlier
comparison in one transaction, keeping its ``comparison_id`` so links stay valid.
The readers serve the Compare page, the CLI and the tests.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from factorscope.errors import InputError, WarehouseError
from factorscope.warehouse.store import transaction

COMPARISON_TABLES = ("comparison_matches", "comparison_best", "comparison_splits")
"""Per-comparison row tables (their rows go with the ``comparisons`` row)."""

METHODS = ("cosine", "coactivation")
"""What a one-to-one matching maximised (``comparison_matches.method``)."""

SPLIT_PART = pa.struct([("factor", pa.int32()), ("weight", pa.float64())])
"""Arrow type of one element of ``comparison_splits.parts``."""


def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def write_comparison(
    con: duckdb.DuckDBPyConnection,
    summary: dict[str, Any],
    *,
    matches: pa.Table,
    best: pa.Table,
    splits: pa.Table,
) -> int:
    """Store one comparison (replacing the same pair's); returns its ``comparison_id``.

    ``summary`` holds the ``comparisons`` columns but the id and ``created_at``
    (``settings`` as a dict); the tables hold their table's columns but the id.
    """
    row = dict(summary)
    row["settings"] = json.dumps(row["settings"], sort_keys=True)
    with transaction(con):
        found = con.execute(
            "SELECT comparison_id FROM comparisons WHERE dictionary_a = ? AND dictionary_b = ?",
            [row["dictionary_a"], row["dictionary_b"]],
        ).fetchall()
        if found:
            comparison_id = int(found[0][0])
            for table in ("comparisons", *COMPARISON_TABLES):
                # Table names come from the fixed tuple above, never from a caller.
                con.execute(f"DELETE FROM {table} WHERE comparison_id = ?", [comparison_id])
        else:
            comparison_id = int(
                con.execute(
                    "SELECT coalesce(max(comparison_id), 0) + 1 FROM comparisons"
                ).fetchall()[0][0]
            )
        row["comparison_id"] = comparison_id
        con.register("_comparison", pa.Table.from_pylist([row]))
        con.register("_matches", matches)
        con.register("_best", best)
        con.register("_splits", splits)
        try:
            con.execute("INSERT INTO comparisons BY NAME SELECT * FROM _comparison")
            for table, source in (
                ("comparison_matches", "_matches"),
                ("comparison_best", "_best"),
                ("comparison_splits", "_splits"),
            ):
                # Names from the fixed pairs above.
                con.execute(
                    f"INSERT INTO {table} BY NAME SELECT ? AS comparison_id, * FROM {source}",
                    [comparison_id],
                )
        finally:
            for name in ("_comparison", "_matches", "_best", "_splits"):
                con.unregister(name)
    return comparison_id


def list_comparisons(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every stored comparison's summary row, newest pair last (``settings`` decoded)."""
    rows = _dicts(con.execute("SELECT * FROM comparisons ORDER BY comparison_id"))
    for row in rows:
        row["settings"] = json.loads(row["settings"])
    return rows


def find_comparison(con: duckdb.DuckDBPyConnection, dictionary_a: int, dictionary_b: int) -> dict:
    """The comparison of A with B (in that order), or an :class:`InputError` naming the command."""
    rows = _dicts(
        con.execute(
            "SELECT * FROM comparisons WHERE dictionary_a = ? AND dictionary_b = ?",
            [dictionary_a, dictionary_b],
        )
    )
    if not rows:
        raise InputError(
            f"dictionaries {dictionary_a} and {dictionary_b} have not been compared: run "
            f"`factorscope compare {dictionary_a} {dictionary_b}`"
        )
    rows[0]["settings"] = json.loads(rows[0]["settings"])
    return rows[0]


def comparison_matches(
    con: duckdb.DuckDBPyConnection, comparison_id: int, method: str = "cosine"
) -> pl.DataFrame:
    """The one-to-one pairs of a comparison, by factor of A."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    return con.sql(
        "SELECT factor_a, factor_b, cosine, coactivation, peak_layer_a, peak_layer_b, "
        "level_a, level_b FROM comparison_matches WHERE comparison_id = ? AND method = ? "
        "ORDER BY factor_a",
        params=[comparison_id, method],
    ).pl()


def comparison_splits(con: duckdb.DuckDBPyConnection, comparison_id: int) -> pl.DataFrame:
    """The splits (or merges) of a comparison: one row per decomposed factor."""
    return con.sql(
        "SELECT kind, factor, parts, residual FROM comparison_splits "
        "WHERE comparison_id = ? ORDER BY factor",
        params=[comparison_id],
    ).pl()


def match_of(
    con: duckdb.DuckDBPyConnection, comparison_id: int, side: str, factor: int
) -> dict | None:
    """A factor's partner in the cosine matching, seen from ``side`` ('a' or 'b')."""
    if side not in ("a", "b"):
        raise InputError(f"side must be 'a' or 'b', not {side!r}")
    column = "factor_a" if side == "a" else "factor_b"  # from the allow-list above
    rows = _dicts(
        con.execute(
            "SELECT factor_a, factor_b, cosine, coactivation FROM comparison_matches "
            f"WHERE comparison_id = ? AND method = 'cosine' AND {column} = ?",
            [comparison_id, factor],
        )
    )
    best = _dicts(
        con.execute(
            "SELECT best, cosine FROM comparison_best "
            "WHERE comparison_id = ? AND side = ? AND factor = ?",
            [comparison_id, side, factor],
        )
    )
    if not rows and not best:
        return None
    out = rows[0] if rows else {}
    if best:
        out["best"], out["best_cosine"] = best[0]["best"], best[0]["cosine"]
    return out


def dictionary_levels(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> pa.Table | None:
    """(factor, peak_layer, level) of a dictionary's active factors, if it has summaries
    here (it was encoded); None otherwise."""
    summarised = con.execute(
        "SELECT count(*) FROM summary_meta WHERE dictionary_id = ?", [dictionary_id]
    ).fetchall()[0][0]
    if not summarised:
        return None
    return con.sql(
        "SELECT factor, peak_layer, level FROM summary_levels WHERE dictionary_id = ? "
        "ORDER BY factor",
        params=[dictionary_id],
    ).to_arrow_table()


def set_peak_layers(
    con: duckdb.DuckDBPyConnection, comparison_id: int, peaks_a: pa.Table, peaks_b: pa.Table
) -> tuple[float | None, float | None]:
    """Fill the matched pairs' peak layers and levels; returns the agreement shares.

    ``peaks_*`` hold (factor, peak_layer, level) of each dictionary's active factors.
    The shares count pairs whose factors both fire (a silent factor has no peak).
    """
    con.register("_peaks_a", peaks_a)
    con.register("_peaks_b", peaks_b)
    try:
        with transaction(con):
            con.execute(
                "UPDATE comparison_matches m SET peak_layer_a = a.peak_layer, level_a = a.level "
                "FROM _peaks_a a WHERE m.comparison_id = ? AND m.factor_a = a.factor",
                [comparison_id],
            )
            con.execute(
                "UPDATE comparison_matches m SET peak_layer_b = b.peak_layer, level_b = b.level "
                "FROM _peaks_b b WHERE m.comparison_id = ? AND m.factor_b = b.factor",
                [comparison_id],
            )
            peak, level = con.execute(
                "SELECT avg((peak_layer_a = peak_layer_b)::DOUBLE), "
                "avg((level_a = level_b)::DOUBLE) "
                "FROM comparison_matches WHERE comparison_id = ? AND method = 'cosine' "
                "AND peak_layer_a IS NOT NULL AND peak_layer_b IS NOT NULL",
                [comparison_id],
            ).fetchall()[0]
            con.execute(
                "UPDATE comparisons SET peak_agreement = ?, level_agreement = ? "
                "WHERE comparison_id = ?",
                [peak, level, comparison_id],
            )
    except duckdb.Error as e:
        raise WarehouseError(f"storing the peak layers of comparison {comparison_id}: {e}") from e
    finally:
        con.unregister("_peaks_a")
        con.unregister("_peaks_b")
    return peak, level


def dictionary_choices(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every dictionary of the run, for the Compare page's pickers: dictionary_id,
    n_factors, seed, lambda1, status (encoded ones show their factors' contexts)."""
    return _dicts(
        con.execute(
            "SELECT dictionary_id, n_factors, seed, lambda1, status FROM dictionaries "
            "ORDER BY dictionary_id"
        )
    )


def matched_cosines(con: duckdb.DuckDBPyConnection, comparison_id: int) -> list[float]:
    """The cosines of a comparison's one-to-one (cosine) matching, for its histogram."""
    rows = con.execute(
        "SELECT cosine FROM comparison_matches WHERE comparison_id = ? AND method = 'cosine' "
        "ORDER BY factor_a",
        [comparison_id],
    ).fetchall()
    return [float(r[0]) for r in rows]
