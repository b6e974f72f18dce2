"""TEMPORARY STAND-IN for the comparison contract (tests/contract.py).

Another branch writes the real module with this same API; this minimal version only
lets the kill tests run until it lands, and is replaced by it at merge time. Ids and
strings compare exactly, floats with ``np.isclose`` (RTOL, ATOL), and failures say
how many rows differ, the first differing row and the largest difference: never a
full diff of the tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

RTOL: float = 1e-4
ATOL: float = 1e-5


def read_table(db: Path, table: str, order_by: str = "ALL") -> pl.DataFrame:
    """Every row of ``table`` in ``db`` (read-only), ordered by ``order_by``."""
    from factorscope.warehouse.connection import connect

    con = connect(db, read_only=True)
    try:
        # Test helper: table and order come from the test's own literals.
        return pl.from_arrow(con.sql(f"SELECT * FROM {table} ORDER BY {order_by}").to_arrow_table())
    finally:
        con.close()


def _float_like(dtype: pl.DataType) -> bool:
    if dtype.is_float():
        return True
    inner = getattr(dtype, "inner", None)
    return inner is not None and _float_like(inner)


def assert_tables_match(
    expected: pl.DataFrame,
    actual: pl.DataFrame,
    *,
    name: str,
    key=None,
    topk=None,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> None:
    """Equal ids/strings, floats within tolerance; a short message on failure."""
    assert expected.columns == actual.columns, (
        f"{name}: columns {actual.columns} != expected {expected.columns}"
    )
    assert expected.height == actual.height, (
        f"{name}: {actual.height} rows, expected {expected.height}"
    )
    if key is not None:
        keys = [key] if isinstance(key, str) else list(key)
        expected, actual = expected.sort(keys), actual.sort(keys)
    for column in expected.columns:
        e, a = expected.get_column(column), actual.get_column(column)
        if _float_like(e.dtype):
            if e.dtype.is_float():
                ev, av = e.to_numpy().astype(float), a.to_numpy().astype(float)
            else:
                ev = np.asarray(e.explode().to_numpy(), dtype=float)
                av = np.asarray(a.explode().to_numpy(), dtype=float)
                assert ev.size == av.size, f"{name}.{column}: list lengths differ"
            close = np.isclose(av, ev, rtol=rtol, atol=atol, equal_nan=True)
            if not close.all():
                bad = np.flatnonzero(~close)
                diff = np.nanmax(np.abs(av - ev))
                raise AssertionError(
                    f"{name}.{column}: {bad.size} values differ beyond rtol={rtol} atol={atol}; "
                    f"first at flat index {bad[0]} ({av[bad[0]]!r} != {ev[bad[0]]!r}); "
                    f"largest difference {diff:.3g}"
                )
        else:
            same = (e == a) | (e.is_null() & a.is_null())
            same = same.fill_null(False)
            if not same.all():
                bad = np.flatnonzero(~same.to_numpy())
                raise AssertionError(
                    f"{name}.{column}: {bad.size} of {expected.height} rows differ; first at row "
                    f"{bad[0]}: {a[int(bad[0])]!r} != expected {e[int(bad[0])]!r}"
                )


def assert_databases_match(expected_db: Path, actual_db: Path, tables: Iterable[str]) -> None:
    """Every named table of ``actual_db`` matches ``expected_db`` (rows ordered by ALL)."""
    for table in tables:
        assert_tables_match(
            read_table(expected_db, table), read_table(actual_db, table), name=table
        )
