"""Parquet beside (or instead of) the DuckDB file: shard folders and attached codes.

A *shard folder* is what one shard of a scaled-out encode writes (see
``factorscope.stages.shard_encode``), in a hive layout DuckDB, Spark or polars read as they are::

    shard.json                      manifest, written last: the shard is complete
    dictionary.parquet              factor, vector (the atoms the codes were made with)
    sentences.parquet, tokens.parquet   this shard's rows of the run's tables
    codes/layer=L/part-SSSSS-CCCCCC.parquet   factor, token_id, alpha (non-zeros)
    stats/part-SSSSS-CCCCCC.parquet  per-chunk, per-layer sums (layer_quality)
    partial/top.parquet             per (factor, layer) the partial top-k (token_id, alpha)
    partial/importance.parquet      per (factor, layer) the partial top-K alphas, count, max
    partial/histogram.parquet       per (factor, layer, bin) counts
    partial/words.parquet           per (word, layer, factor) sum of alpha and hits

A warehouse built with ``factorscope merge --attach`` keeps its codes in those
folders: ``codes`` is then a view over the Parquet files (:func:`attach_codes`), and
the roots it may read are listed in a sidecar file ``<db>.parquet-roots.json``, which
every read-only connection (the app, the SQL console) turns into DuckDB's
``allowed_directories`` before locking the configuration (``connection.connect``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from factorscope.errors import WarehouseError

MANIFEST = "shard.json"
CODES_SCHEMA = pa.schema(
    [("factor", pa.int32()), ("token_id", pa.int64()), ("alpha", pa.float32())]
)


@dataclass(frozen=True)
class ShardLayout:
    """The paths inside one shard folder."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def dictionary(self) -> Path:
        return self.root / "dictionary.parquet"

    @property
    def sentences(self) -> Path:
        return self.root / "sentences.parquet"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens.parquet"

    @property
    def codes(self) -> Path:
        return self.root / "codes"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    def partial(self, name: str) -> Path:
        return self.root / "partial" / f"{name}.parquet"

    def codes_part(self, layer: int, shard: int, chunk: int) -> Path:
        return self.codes / f"layer={layer}" / f"part-{shard:05d}-{chunk:06d}.parquet"

    def stats_part(self, shard: int, chunk: int) -> Path:
        return self.stats / f"part-{shard:05d}-{chunk:06d}.parquet"

    def read_manifest(self) -> dict | None:
        if not self.manifest.is_file():
            return None
        return json.loads(self.manifest.read_text("utf-8"))


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write one Parquet file atomically (temp file, then rename): no half files on a kill."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), "utf-8")
    os.replace(tmp, path)


def codes_dataset(roots: list[Path]) -> ds.Dataset:
    """The codes of one or more shard folders as one Arrow dataset (layer from the path)."""
    parts = [
        ds.dataset(
            ShardLayout(root).codes,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("layer", pa.int16())]), flavor="hive"),
            exclude_invalid_files=True,
        )
        for root in roots
        if ShardLayout(root).codes.is_dir()
    ]
    if not parts:
        empty = CODES_SCHEMA.insert(0, pa.field("layer", pa.int16()))
        return ds.dataset(pa.table({f.name: pa.array([], f.type) for f in empty}))
    return parts[0] if len(parts) == 1 else ds.dataset(parts)


def files_dataset(paths: list[Path]) -> ds.Dataset:
    """Plain Parquet files (no partitioning) as one Arrow dataset."""
    return ds.dataset([str(p) for p in paths], format="parquet")


# ----------------------------------------------------------------------------- attached codes


def roots_sidecar(db_path: str | Path) -> Path:
    """The file listing the Parquet roots a database's ``codes`` view reads."""
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".parquet-roots.json")


def attached_roots(db_path: str | Path) -> list[str]:
    """The codes folders an attached warehouse reads (empty for an ordinary one)."""
    sidecar = roots_sidecar(db_path)
    if not sidecar.is_file():
        return []
    try:
        return [str(r) for r in json.loads(sidecar.read_text("utf-8"))["roots"]]
    except (ValueError, KeyError, TypeError) as e:
        raise WarehouseError(f"{sidecar} is not a valid roots file: {e}") from e


def write_roots_sidecar(db_path: str | Path, roots: list[Path] | None) -> None:
    """Record (or, with ``None``, forget) the folders the database's codes view reads."""
    sidecar = roots_sidecar(db_path)
    if roots is None:
        sidecar.unlink(missing_ok=True)
        return
    write_json({"roots": [_dir_prefix(ShardLayout(r).codes) for r in roots]}, sidecar)


def _dir_prefix(path: Path) -> str:
    return str(path.resolve()).rstrip("/") + "/"


def _string_literal(text: str) -> str:
    """A SQL string literal for a file path, for the one place no parameter can go.

    A view body cannot hold bound parameters, so the attached codes view names its
    files literally; paths are resolved by us and refused if they hold a quote or a
    control character rather than escaped.
    """
    if any(c in text for c in "'\\") or any(ord(c) < 32 for c in text):
        raise WarehouseError(
            f"cannot attach Parquet at {text!r}: quotes, backslashes or control "
            "characters in the path"
        )
    return f"'{text}'"


def attach_codes(con: duckdb.DuckDBPyConnection, roots: list[Path], dictionary_id: int) -> None:
    """Replace the ``codes`` table by a view over the shard folders' codes (hive by layer),
    all of dictionary ``dictionary_id``."""
    dictionary_id = int(dictionary_id)  # an int, so its text in the view body is a number
    with_files = [r for r in roots if any(ShardLayout(r).codes.glob("*/*.parquet"))]
    if not with_files:
        sql = (
            "CREATE VIEW codes AS SELECT CAST(NULL AS INTEGER) AS dictionary_id, "
            "CAST(NULL AS SMALLINT) AS layer, "
            "CAST(NULL AS INTEGER) AS factor, CAST(NULL AS BIGINT) AS token_id, "
            "CAST(NULL AS FLOAT) AS alpha WHERE false"
        )
    else:
        globs = ", ".join(
            _string_literal(_dir_prefix(ShardLayout(r).codes) + "*/*.parquet") for r in with_files
        )
        # The only SQL built from text in the warehouse: resolved paths, checked above.
        sql = (
            "CREATE VIEW codes AS "
            f"SELECT CAST({dictionary_id} AS INTEGER) AS dictionary_id, "
            "CAST(layer AS SMALLINT) AS layer, factor, token_id, alpha "
            f"FROM read_parquet([{globs}], hive_partitioning = true, "
            "hive_types = {'layer': SMALLINT}, union_by_name = true)"
        )
    try:
        con.execute("DROP TABLE IF EXISTS codes")
        con.execute("DROP VIEW IF EXISTS codes")
        con.execute(sql)
    except duckdb.Error as e:
        raise WarehouseError(f"attaching the Parquet codes failed: {e}") from e


def codes_are_attached(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = 'codes' AND NOT internal"
    ).fetchall()
    return bool(rows[0][0])
