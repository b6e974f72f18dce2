"""Reads and writes of the pipeline stages (ingest, learn, encode).

Every chunk a stage writes goes in one transaction together with its row in the
stage's ``*_chunks`` table, so a killed process leaves either the whole chunk or
nothing, and a resumed one skips exactly the chunks already there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from factorscope.errors import WarehouseError
from factorscope.limits import MAX_POSITIONS, token_id
from factorscope.warehouse.parquet import write_parquet

STATS_COLUMNS = ("layer", "n_vectors", "sq_residual", "sq_norm", "sum_x", "sum_l0", "n_zero_codes")
"""Per-chunk, per-layer sums of ``encode_chunk_stats`` (from which layer_quality is derived)."""


def stats_table(stats: dict[str, list] | None = None) -> pa.Table:
    """Per-layer sums as the typed Arrow table ``encode_chunk_stats`` and shard stats files
    hold (empty when ``stats`` is None)."""
    stats = stats or {k: [] for k in STATS_COLUMNS}
    return pa.table(
        {
            "layer": pa.array(stats["layer"], pa.int16()),
            "n_vectors": pa.array(stats["n_vectors"], pa.int64()),
            "sq_residual": pa.array(stats["sq_residual"], pa.float64()),
            "sq_norm": pa.array(stats["sq_norm"], pa.float64()),
            "sum_x": pa.array(stats["sum_x"], pa.list_(pa.float64())),
            "sum_l0": pa.array(stats["sum_l0"], pa.int64()),
            "n_zero_codes": pa.array(stats["n_zero_codes"], pa.int64()),
        }
    )


TOKEN_ID_STRIDE = MAX_POSITIONS
"""The stride of :func:`factorscope.limits.token_id`, under the name SQL parameters use."""


# ----------------------------------------------------------------------------- helpers

SENTENCES_SCHEMA = pa.schema(
    [
        ("sentence_idx", pa.int32()),
        ("sentence_id", pa.string()),
        ("source", pa.string()),
        ("text", pa.string()),
        ("n_tokens", pa.int32()),
        ("metadata", pa.string()),  # a JSON object as text, or null
    ]
)
"""Arrow layout of a chunk of ``sentences`` rows (as written by ingest and synthetic data)."""

SENTENCE_COLUMNS = "sentence_idx, sentence_id, source, text, n_tokens, metadata"
"""The columns of ``sentences``, for the statements that copy its rows."""

TOKENS_SCHEMA = pa.schema(
    [
        ("token_id", pa.int64()),
        ("sentence_idx", pa.int32()),
        ("position", pa.int16()),
        ("piece", pa.string()),
        ("vocab_id", pa.int32()),
        ("word", pa.string()),
        ("word_index", pa.int32()),
        ("char_start", pa.int32()),
        ("char_end", pa.int32()),
        ("word_start", pa.int32()),
        ("word_end", pa.int32()),
    ]
)
"""Arrow layout of a chunk of ``tokens`` rows."""


def sentences_table(columns: dict[str, list]) -> pa.Table:
    """Column lists named as ``SENTENCES_SCHEMA`` as an Arrow table of that schema.

    ``metadata`` may be left out (no sentence has any) or hold dicts (stored as JSON).
    """
    columns = dict(columns)
    n = len(columns["sentence_idx"])
    metadata = columns.get("metadata") or [None] * n
    columns["metadata"] = [
        m if m is None or isinstance(m, str) else json.dumps(m, sort_keys=True) for m in metadata
    ]
    return pa.Table.from_pydict(columns, schema=SENTENCES_SCHEMA)


def tokens_table(columns: dict[str, list]) -> pa.Table:
    """Column lists named as ``TOKENS_SCHEMA`` as an Arrow table of that schema."""
    return pa.Table.from_pydict(columns, schema=TOKENS_SCHEMA)


def vectors_to_arrow(vectors: np.ndarray) -> pa.Array:
    """An (n, d) float32 array as an Arrow list column without a Python loop."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    offsets = np.arange(0, (n + 1) * d, d, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(vectors.reshape(-1)))


def arrow_to_vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """The inverse of :func:`vectors_to_arrow`: a list column as an (n, dim) float32 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(-1, dim)


class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.execute("BEGIN TRANSACTION")
        return self.con

    def __exit__(self, exc_type, exc, tb) -> None:
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")


def transaction(con: duckdb.DuckDBPyConnection) -> _Transaction:
    """``with transaction(con):`` commits on success and rolls back on any error."""
    return _Transaction(con)


def _one_dict(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> dict | None:
    cur = con.execute(sql, params)
    rows = cur.fetchall()  # fetchall, not fetchone: it leaves no unfinished result behind
    if not rows:
        return None
    return dict(zip([c[0] for c in cur.description], rows[0], strict=True))


# ----------------------------------------------------------------------------- runs


def get_run(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The database's ingest run, or None for a fresh database."""
    run = _one_dict(con, "SELECT * FROM runs ORDER BY run_id LIMIT 1", [])
    if run is not None:
        run["config"] = json.loads(run["config"])
    return run


def require_run(con: duckdb.DuckDBPyConnection, *, ingested: bool = True) -> dict:
    run = get_run(con)
    if run is None:
        raise WarehouseError("this database holds no ingest run (run `factorscope ingest` first)")
    if ingested and run["status"] != "ingested":
        raise WarehouseError(
            "the ingest run in this database is unfinished: run the same "
            "`factorscope ingest` command again to resume it"
        )
    return run


def create_run(con: duckdb.DuckDBPyConnection, **fields: Any) -> None:
    fields = dict(fields)
    fields["config"] = json.dumps(fields["config"], sort_keys=True)
    names = list(fields)
    placeholders = ", ".join(f"${n}" for n in names)
    # Column names come from this module's callers (fixed keyword names), never from users.
    con.execute(
        f"INSERT INTO runs (run_id, {', '.join(names)}) VALUES (1, {placeholders})",
        fields,
    )


def write_corpus_report(con: duckdb.DuckDBPyConnection, report: dict) -> None:
    """Store what the corpus reader did not keep, by reason (``CorpusReport.to_dict()``)."""
    con.execute("DELETE FROM ingest_drops")
    rows = [(reason, n, words) for reason, (n, words) in report["dropped"].items() if n]
    if rows:
        con.executemany("INSERT INTO ingest_drops VALUES (?, ?, ?)", rows)
    con.execute(
        "UPDATE runs SET n_segments = ?, n_resplit = ?, n_resplit_into = ? WHERE run_id = 1",
        [report["segments"], report["resplit"], report["resplit_into"]],
    )


def finish_run(con: duckdb.DuckDBPyConnection, seconds: float) -> None:
    con.execute(
        "UPDATE runs SET status = 'ingested', finished_at = current_timestamp, "
        "ingest_seconds = coalesce(ingest_seconds, 0) + ? WHERE run_id = 1",
        [seconds],
    )


def add_ingest_seconds(con: duckdb.DuckDBPyConnection, seconds: float) -> None:
    con.execute(
        "UPDATE runs SET ingest_seconds = coalesce(ingest_seconds, 0) + ? WHERE run_id = 1",
        [seconds],
    )


def ingest_finished(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether this file holds a finished ingest run (all its chunks committed)."""
    run = get_run(con)
    return run is not None and run["status"] == "ingested"


def run_identity(con: duckdb.DuckDBPyConnection, database: str = "main") -> tuple | None:
    """(config_hash, number of sentences, a digest of their ids) of a file's run, or None.

    ``database`` is ``main`` or an attached alias from :data:`_RUN_DATABASES`. Two
    files with equal identities hold the same run: labels of one fit the other.
    """
    if database not in _RUN_DATABASES:
        raise ValueError(f"unknown database alias {database!r}")
    # `main` is the schema of this file, whose catalog is named after the file.
    present = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs' AND database_name = "
        "CASE WHEN ? = 'main' THEN current_database() ELSE ? END",
        [database, database],
    ).fetchall()[0][0]
    if not present:
        return None
    # The alias comes from _RUN_DATABASES above, never from a caller's string.
    row = con.execute(
        f"SELECT (SELECT config_hash FROM {database}.runs ORDER BY run_id LIMIT 1), "
        f"(SELECT count(*) FROM {database}.sentences), "
        f"(SELECT bit_xor(hash(sentence_id)) FROM {database}.sentences)"
    ).fetchall()[0]
    return None if row[0] is None else tuple(row)


_RUN_DATABASES = ("main", "published")


def same_run_as_published(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the attached ``published`` file holds the same run as this one."""
    mine = run_identity(con, "main")
    return mine is not None and mine == run_identity(con, "published")


def done_ingest_chunks(con: duckdb.DuckDBPyConnection) -> set[int]:
    return {row[0] for row in con.execute("SELECT chunk FROM ingest_chunks").fetchall()}


def write_ingest_chunk(
    con: duckdb.DuckDBPyConnection,
    *,
    chunk: int,
    sentences: pa.Table,
    tokens: pa.Table,
    sample_layers: np.ndarray,
    sample_token_ids: np.ndarray,
    sample_vectors: np.ndarray,
    seconds: float,
) -> None:
    """Store one chunk's sentences, tokens and sampled hidden states atomically."""
    states = pa.table(
        {
            "layer": pa.array(np.asarray(sample_layers, dtype=np.int16)),
            "token_id": pa.array(np.asarray(sample_token_ids, dtype=np.int64)),
            "vector": vectors_to_arrow(sample_vectors),
        }
    )
    with transaction(con):
        con.register("chunk_sentences", sentences)
        con.register("chunk_tokens", tokens)
        con.register("chunk_states", states)
        try:
            con.execute(
                f"INSERT INTO sentences BY NAME SELECT {SENTENCE_COLUMNS} FROM chunk_sentences"
            )
            con.execute("INSERT INTO tokens BY NAME SELECT * FROM chunk_tokens")
            con.execute(
                "INSERT INTO hidden_states BY NAME SELECT layer, token_id, vector FROM chunk_states"
            )
            con.execute(
                "INSERT INTO ingest_chunks (chunk, n_sentences, n_tokens, n_sampled, seconds) "
                "VALUES (?, ?, ?, ?, ?)",
                [chunk, sentences.num_rows, tokens.num_rows, states.num_rows, seconds],
            )
        finally:
            for name in ("chunk_sentences", "chunk_tokens", "chunk_states"):
                con.unregister(name)


def read_sentences(con: duckdb.DuckDBPyConnection, start: int, stop: int) -> list[tuple[int, str]]:
    """(sentence_idx, text) for start <= sentence_idx < stop, in order."""
    return con.execute(
        "SELECT sentence_idx, text FROM sentences "
        "WHERE sentence_idx >= ? AND sentence_idx < ? ORDER BY sentence_idx",
        [start, stop],
    ).fetchall()


def read_token_ids(con: duckdb.DuckDBPyConnection, start: int, stop: int) -> np.ndarray:
    """Stored token ids of sentences start..stop-1, in order."""
    return con.execute(
        "SELECT token_id FROM tokens WHERE sentence_idx >= ? AND sentence_idx < ? "
        "ORDER BY token_id",
        [start, stop],
    ).fetchnumpy()["token_id"]


def read_chunk_states(
    con: duckdb.DuckDBPyConnection, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored hidden states of sentences start..stop-1 as (vectors, layers, token_ids).

    Rows in (layer, token_id) order, the order encode codes them in. Complete only
    when ingest kept every vector (``--sample-size all``).
    """
    run = require_run(con)
    table = con.sql(
        "SELECT layer, token_id, vector FROM hidden_states "
        "WHERE token_id >= ? AND token_id < ? ORDER BY layer, token_id",
        params=[token_id(start, 0), token_id(stop, 0)],
    ).to_arrow_table()
    vectors = arrow_to_vectors(table.column("vector"), run["hidden_size"])
    layers = table.column("layer").to_numpy().astype(np.int64)
    token_ids = table.column("token_id").to_numpy().astype(np.int64)
    return vectors, layers, token_ids


def read_hidden_sample(
    con: duckdb.DuckDBPyConnection,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored token x layer sample as (vectors (n, d) float32, layers (n,), token_ids (n,)).

    Rows come in (layer, token_id) order; callers wanting a subset should pick it by
    the sampling key (see factorscope.stages.learn), not by position, or they would get
    the first layers only.
    """
    run = require_run(con)
    table = con.sql(
        "SELECT layer, token_id, vector FROM hidden_states ORDER BY layer, token_id"
    ).to_arrow_table()
    if table.num_rows == 0:
        raise WarehouseError("the database holds no hidden-state sample to learn from")
    vectors = arrow_to_vectors(table.column("vector"), run["hidden_size"])
    layers = table.column("layer").to_numpy().astype(np.int64)
    token_ids = table.column("token_id").to_numpy().astype(np.int64)
    return vectors, layers, token_ids


# ----------------------------------------------------------------------------- dictionaries


@dataclass(frozen=True)
class DictionaryRecord:
    """A stored dictionary: what encode and the live analyzer need to reproduce codes."""

    dictionary_id: int
    components: np.ndarray  # (n_factors, hidden_size), unit-norm rows
    lambda1: float
    preprocessing: dict
    params: dict
    status: str
    source: str
    encode_solver: dict | None = None
    """The solver its last encode used ({"backend", "version"}; schema 009), if recorded."""

    @property
    def n_factors(self) -> int:
        return int(self.components.shape[0])


def save_dictionary(
    con: duckdb.DuckDBPyConnection,
    *,
    components: np.ndarray,
    lambda1: float,
    preprocessing: dict,
    params: dict,
    seed: int | None,
    fit_seconds: float | None,
    source: str,
    kind: str = "learned",
    parent_id: int | None = None,
    dictionary_id: int | None = None,
) -> int:
    """Store a new dictionary (status 'learned') and return its id.

    ``dictionary_id``: the id to store it under (a merge keeps the run database's id, so
    a dictionary is the same number wherever it is encoded); default the next free one.

    ``kind`` is ``'learned'``, ``'imported'`` (``learn --from-npy``) or ``'control'``
    (``learn --control``, whose ``parent_id`` names the dictionary it is a control of).
    """
    kinds = ("learned", "imported", "control")  # dictionaries.kind (schema 007)
    if kind not in kinds:
        raise WarehouseError(f"dictionary kind must be one of {kinds}, not {kind!r}")
    if (kind == "control") != (parent_id is not None):
        raise WarehouseError("a control dictionary has a parent, and only a control has one")
    components = np.asarray(components, dtype=np.float32)
    n_factors, hidden = components.shape
    atoms = pa.table(
        {
            "factor": pa.array(np.arange(n_factors, dtype=np.int32)),
            "vector": vectors_to_arrow(components),
        }
    )
    with transaction(con):
        if dictionary_id is None:
            dictionary_id = con.execute(
                "SELECT coalesce(max(dictionary_id), 0) + 1 FROM dictionaries"
            ).fetchall()[0][0]
        con.execute(
            "INSERT INTO dictionaries (dictionary_id, run_id, n_factors, hidden_size, lambda1, "
            "preprocessing, seed, fit_seconds, source, params, status, kind, parent_id) "
            "VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, 'learned', ?, ?)",
            [
                dictionary_id,
                n_factors,
                hidden,
                float(lambda1),
                json.dumps(preprocessing, sort_keys=True),
                seed,
                fit_seconds,
                source,
                json.dumps(params, sort_keys=True, default=str),
                kind,
                parent_id,
            ],
        )
        con.register("new_atoms", atoms)
        try:
            con.execute(
                "INSERT INTO dictionary_atoms (dictionary_id, factor, vector) "
                "SELECT ?, factor, vector FROM new_atoms",
                [dictionary_id],
            )
        finally:
            con.unregister("new_atoms")
    return int(dictionary_id)


def latest_dictionary_id(
    con: duckdb.DuckDBPyConnection, *, status: tuple[str, ...] | None = None
) -> int | None:
    """The newest dictionary (of one of ``status``) that is not a control, else the newest.

    What ``encode`` and ``probe`` use when no ``--dictionary`` is given: a control
    (``learn --control``) is never picked while another dictionary is there. A file made
    before controls existed (no ``kind`` column; read-only, so not migrated) has none.
    """
    has_kind = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = 'dictionaries' "
        "AND column_name = 'kind'"
    ).fetchall()[0][0]
    control_last = "coalesce(kind, 'learned') = 'control', " if has_kind else ""
    sql = "SELECT dictionary_id FROM dictionaries"
    params: list[Any] = []
    if status:
        sql += " WHERE list_contains(?, status)"
        params.append(list(status))
    sql += f" ORDER BY {control_last}dictionary_id DESC LIMIT 1"
    rows = con.execute(sql, params).fetchall()
    return int(rows[0][0]) if rows else None


def load_dictionary(
    con: duckdb.DuckDBPyConnection, dictionary_id: int | None = None
) -> DictionaryRecord:
    """A stored dictionary (the newest one when no id is given)."""
    if dictionary_id is None:
        dictionary_id = latest_dictionary_id(con)
        if dictionary_id is None:
            raise WarehouseError("this database holds no dictionary (run `factorscope learn`)")
    meta = _one_dict(con, "SELECT * FROM dictionaries WHERE dictionary_id = ?", [dictionary_id])
    if meta is None:
        raise WarehouseError(f"no dictionary with id {dictionary_id}")
    table = con.sql(
        "SELECT vector FROM dictionary_atoms WHERE dictionary_id = ? ORDER BY factor",
        params=[dictionary_id],
    ).to_arrow_table()
    return DictionaryRecord(
        dictionary_id=int(dictionary_id),
        components=arrow_to_vectors(table.column("vector"), meta["hidden_size"]),
        lambda1=float(meta["lambda1"]),
        preprocessing=json.loads(meta["preprocessing"]),
        params=json.loads(meta["params"]),
        status=meta["status"],
        source=meta["source"],
        encode_solver=json.loads(meta["encode_solver"]) if meta.get("encode_solver") else None,
    )


# ----------------------------------------------------------------------------- encode


def begin_encoding(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> None:
    """Mark ``dictionary_id`` as being encoded, next to the dictionaries already encoded.

    The codes, summaries and labels of other dictionaries are kept (each is keyed by its
    dictionary); codes already written for this one are kept, which is what resume needs.
    Codes of this dictionary without their chunk row (a chunk killed mid-way cannot leave
    any: a chunk is one transaction) are never read.
    """
    with transaction(con):
        # Another dictionary's encode killed among its chunks is dropped, as before.
        stale = con.execute(
            "SELECT dictionary_id FROM dictionaries WHERE status = 'encoding' "
            "AND dictionary_id <> ?",
            [dictionary_id],
        ).fetchall()
        for (other,) in stale:
            for table in ("codes", "encode_chunks", "encode_chunk_stats"):
                # Table names from the fixed tuple above.
                con.execute(f"DELETE FROM {table} WHERE dictionary_id = ?", [other])
            con.execute(
                "UPDATE dictionaries SET status = 'learned' WHERE dictionary_id = ?", [other]
            )
        con.execute(
            "UPDATE dictionaries SET status = 'encoding' WHERE dictionary_id = ?",
            [dictionary_id],
        )


def encode_finished(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> bool:
    """Whether ``dictionary_id``'s encode is finished here, summaries included.

    Finished means its status is ``encoded`` *and* the summary tables were rebuilt
    from its codes (``summary_meta`` names it); a status committed before a kill in
    the summary refresh is not enough.
    """
    row = con.execute(
        "SELECT d.status, (SELECT count(*) FROM summary_meta m "
        "WHERE m.dictionary_id = d.dictionary_id AND m.key = 'seconds') "
        "FROM dictionaries d WHERE d.dictionary_id = ?",
        [dictionary_id],
    ).fetchall()
    return bool(row) and row[0][0] == "encoded" and row[0][1] > 0


def unfinished_encode(con: duckdb.DuckDBPyConnection) -> int | None:
    """The dictionary whose encode this file holds unfinished (codes or summaries), if any."""
    rows = con.execute(
        "SELECT dictionary_id FROM dictionaries WHERE status <> 'learned' ORDER BY dictionary_id"
    ).fetchall()
    for (dictionary_id,) in rows:
        if not encode_finished(con, dictionary_id):
            return int(dictionary_id)
    return None


def done_encode_chunks(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> set[int]:
    rows = con.execute(
        "SELECT chunk FROM encode_chunks WHERE dictionary_id = ?", [dictionary_id]
    ).fetchall()
    return {r[0] for r in rows}


def tokens_in_chunks(con: duckdb.DuckDBPyConnection, chunks: list[int]) -> int:
    """Stored tokens of the given ingest chunks (for progress totals)."""
    if not chunks:
        return 0
    return int(
        con.execute(
            "SELECT coalesce(sum(n_tokens), 0) FROM ingest_chunks WHERE list_contains(?, chunk)",
            [chunks],
        ).fetchall()[0][0]
    )


def layer_quality_rows(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> list[dict]:
    """Per-layer FVU, mean L0, all-zero share and dead factors of one dictionary."""
    cur = con.execute(
        "SELECT layer, fvu, mean_l0, zero_code_share, dead_factors, lambda1 FROM layer_quality "
        "WHERE dictionary_id = ? ORDER BY layer",
        [dictionary_id],
    )
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def list_dictionaries(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every stored dictionary's id, source and params (JSON decoded), oldest first."""
    rows = con.execute(
        "SELECT dictionary_id, source, params, status FROM dictionaries ORDER BY dictionary_id"
    ).fetchall()
    return [
        {"dictionary_id": r[0], "source": r[1], "params": json.loads(r[2]), "status": r[3]}
        for r in rows
    ]


def staged_chunk_file(staging: Path, dictionary_id: int, chunk: int) -> Path:
    """The Parquet file of one chunk's codes in an encode's staging folder."""
    return staging / f"dictionary={dictionary_id}" / f"chunk={chunk}.parquet"


def done_staged_chunks(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, staging: Path
) -> set[int]:
    """Chunks committed with their codes file present; the others are forgotten, to redo.

    A chunk row without its file (the folder was removed, or an older version wrote the
    chunk's codes into the table) is deleted with its sums and any codes in the table.
    """
    done = done_encode_chunks(con, dictionary_id)
    lost = sorted(c for c in done if not staged_chunk_file(staging, dictionary_id, c).is_file())
    if lost:
        with transaction(con):
            for table in ("encode_chunks", "encode_chunk_stats"):
                # Table names from the fixed tuple above.
                con.execute(
                    f"DELETE FROM {table} WHERE dictionary_id = ? AND list_contains(?, chunk)",
                    [dictionary_id, lost],
                )
            con.execute("DELETE FROM codes WHERE dictionary_id = ?", [dictionary_id])
    return done - set(lost)


def write_encode_chunk(
    con: duckdb.DuckDBPyConnection,
    *,
    dictionary_id: int,
    chunk: int,
    codes: pa.Table,
    stats: pa.Table,
    seconds: float,
    staging: Path | None = None,
) -> None:
    """Store one chunk's non-zero codes (layer, factor, token_id, alpha) and its layer sums.

    With ``staging`` the codes go to the chunk's Parquet file there (written first,
    atomically), to be loaded sorted by :func:`finish_encoding`; the chunk counts as
    done once its row is committed.
    """
    if staging is not None:
        write_parquet(codes, staged_chunk_file(staging, dictionary_id, chunk))
    with transaction(con):
        con.register("chunk_codes", codes)
        con.register("chunk_stats", stats)
        try:
            if staging is None:
                con.execute(
                    "INSERT INTO codes BY NAME "
                    "SELECT ? AS dictionary_id, layer, factor, token_id, alpha FROM chunk_codes",
                    [dictionary_id],
                )
            con.execute(
                "INSERT INTO encode_chunk_stats BY NAME "
                "SELECT ? AS dictionary_id, ? AS chunk, * FROM chunk_stats",
                [dictionary_id, chunk],
            )
            con.execute(
                "INSERT INTO encode_chunks (dictionary_id, chunk, n_codes, seconds) "
                "VALUES (?, ?, ?, ?)",
                [dictionary_id, chunk, codes.num_rows, seconds],
            )
        finally:
            con.unregister("chunk_codes")
            con.unregister("chunk_stats")


def finish_encoding(
    con: duckdb.DuckDBPyConnection,
    dictionary_id: int,
    *,
    sort_codes: bool = True,
    staging: Path | None = None,
    solver: dict | None = None,
) -> None:
    """Sort the codes for fast per-(factor, layer) reads and derive per-layer quality.

    With ``staging`` (the chunks' Parquet files of :func:`write_encode_chunk`) this
    dictionary's codes are appended to ``codes`` once, sorted by (layer, factor,
    alpha DESC): one dictionary's (factor, layer) is one zone-mapped run, the other
    dictionaries' codes are not touched, and no free blocks are left behind. Without
    it, every dictionary's codes already in the table are rewritten sorted (the cost
    grows with all encoded dictionaries). ``sort_codes=False`` leaves ``codes`` as it
    is (a view over attached Parquet). The dictionary's ``encoded_at`` makes it the
    active one (the default of the views). ``solver``: the backend and version that wrote
    the codes, recorded in ``dictionaries.encode_solver``.
    """
    meta = _one_dict(
        con, "SELECT n_factors, lambda1 FROM dictionaries WHERE dictionary_id = ?", [dictionary_id]
    )
    with transaction(con):
        if staging is not None:
            files = [
                str(staged_chunk_file(staging, dictionary_id, chunk))
                for chunk in sorted(done_encode_chunks(con, dictionary_id))
            ]
            # Codes already loaded by a run killed before its summaries are loaded again.
            con.execute("DELETE FROM codes WHERE dictionary_id = ?", [dictionary_id])
            if files:
                con.execute(
                    "INSERT INTO codes SELECT ? AS dictionary_id, layer, factor, token_id, alpha "
                    "FROM read_parquet(?) ORDER BY layer, factor, alpha DESC",
                    [dictionary_id, files],
                )
        elif sort_codes:
            con.execute(
                "CREATE OR REPLACE TABLE codes_sorted ("
                "dictionary_id INTEGER NOT NULL, layer SMALLINT NOT NULL, "
                "factor INTEGER NOT NULL, token_id BIGINT NOT NULL, alpha FLOAT NOT NULL)"
            )
            con.execute(
                "INSERT INTO codes_sorted SELECT dictionary_id, layer, factor, token_id, alpha "
                "FROM codes ORDER BY dictionary_id, layer, factor, alpha DESC"
            )
            con.execute("DROP TABLE codes")
            con.execute("ALTER TABLE codes_sorted RENAME TO codes")
        con.execute("DELETE FROM layer_quality WHERE dictionary_id = ?", [dictionary_id])
        con.execute(
            """
            INSERT INTO layer_quality
            WITH sums AS (
                SELECT layer,
                       sum(n_vectors) AS n,
                       sum(sq_residual) AS sq_residual,
                       sum(sq_norm) AS sq_norm,
                       list_reduce(list(sum_x), lambda a, b: list_transform(
                           list_zip(a, b), lambda p: p[1] + p[2])) AS sum_x,
                       sum(sum_l0) AS sum_l0,
                       sum(n_zero_codes) AS n_zero
                FROM encode_chunk_stats
                WHERE dictionary_id = $dictionary_id
                GROUP BY layer
            ),
            active AS (
                SELECT layer, count(DISTINCT factor) AS n_active FROM codes
                WHERE dictionary_id = $dictionary_id GROUP BY layer
            )
            SELECT $dictionary_id,
                   s.layer,
                   s.n,
                   s.sq_residual / greatest(
                       s.sq_norm - list_sum(list_transform(s.sum_x, lambda v: v * v)) / s.n, 1e-30),
                   s.sum_l0 / s.n,
                   s.n_zero / s.n,
                   $n_factors - coalesce(a.n_active, 0),
                   $lambda1
            FROM sums s LEFT JOIN active a USING (layer)
            """,
            {
                "dictionary_id": dictionary_id,
                "n_factors": meta["n_factors"],
                "lambda1": meta["lambda1"],
            },
        )
        con.execute(
            "UPDATE dictionaries SET status = 'encoded', encoded_at = current_timestamp, "
            "encode_solver = coalesce(?, encode_solver) WHERE dictionary_id = ?",
            [json.dumps(solver, sort_keys=True) if solver else None, dictionary_id],
        )
