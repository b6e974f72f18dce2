"""`factorscope merge-ingest --db RUN SHARD_DBS...`: one run database from the shard ingests.

Each ``ingest --shard i/n`` database holds its shard's sentences and tokens (under
their whole-corpus ``sentence_idx``) and the whole run's bottom-k sample restricted
to its tokens, so the union of the shards is, row for row, what one unsharded ingest
writes: the same sentences, tokens and hidden-state sample, and ``ingest_chunks``
numbered as that ingest numbers them. ``factorscope learn`` then fits the dictionary
on one node over that sample; each shard encodes its own sentences with it
(``encode --db SHARD_DB --shard i/n --out DIR --dictionary-db RUN``).

Like ``merge``, it builds a fresh staging copy (``<db>.wip``, one transaction per
shard) and publishes it whole, so a killed merge-ingest is simply run again: the
re-run discards the staging copy, and the published file is untouched until then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError
from factorscope.stages.sharding import check_complete_shards, run_shard
from factorscope.warehouse import queries, store
from factorscope.warehouse import shards as wshards
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import check_db_path_writable, staged_database

# Run fields every shard of one run must agree on (config_hash covers the settings).
_SAME = ("config_hash", "model", "n_layers", "hidden_size")


@dataclass(frozen=True)
class MergeIngestSummary:
    db_path: Path
    n_shards: int
    n_sentences: int
    n_tokens: int
    sample_size: int
    seconds: float

    def line(self) -> str:
        return (
            f"merge-ingest: {self.n_shards} shards, {self.n_sentences:,} sentences, "
            f"{self.n_tokens:,} tokens, {self.sample_size:,} sampled vectors in "
            f"{self.seconds:.1f} s -> {self.db_path}"
        )


def read_shard_runs(shard_dbs: list[str | Path]) -> list[tuple[Path, dict]]:
    """The shard databases' runs, checked to form one complete set, ordered by shard."""
    if not shard_dbs:
        raise InputError("give the shard databases (from `ingest --shard i/n`) to merge")
    found = []
    for path in map(Path, shard_dbs):
        if not path.is_file():
            raise InputError(f"shard database {path} not found")
        con = connect(path, read_only=True)
        try:
            run = store.get_run(con)
        finally:
            con.close()
        if run is None or run_shard(run) is None:
            raise InputError(f"{path} is not a shard ingest (made by `ingest --shard i/n`)")
        if run["status"] != "ingested":
            raise InputError(
                f"{path} (shard {run_shard(run)}) is unfinished: run its ingest command again"
            )
        found.append((path, run))
    first_path, first = found[0]
    for path, run in found[1:]:
        for key in _SAME:
            if run[key] != first[key]:
                raise InputError(
                    f"{path} is a shard of another run than {first_path} ({key} differs)"
                )
    shards = [run_shard(run) for _, run in found]
    check_complete_shards([(s.index, s.count) for s in shards], "shard databases")
    return sorted(found, key=lambda item: run_shard(item[1]).index)


def run_merge_ingest(db_path: str | Path, shard_dbs: list[str | Path]) -> MergeIngestSummary:
    """Build (replace) the run database at ``db_path`` from complete shard ingests."""
    db_path = Path(db_path)
    check_db_path_writable(db_path)
    shards = read_shard_runs(shard_dbs)
    if any(path.resolve() == db_path.resolve() for path, _ in shards):
        raise InputError(f"--db {db_path} is one of the shards; write the merge elsewhere")
    started = time.perf_counter()
    first = shards[0][1]
    config = {k: v for k, v in first["config"].items() if k != "shard"}
    n_sentences = sum(int(run["n_sentences"]) for _, run in shards)
    chunk_size = int(config["chunk_size"])
    seconds = sum(float(run["ingest_seconds"] or 0.0) for _, run in shards)
    # Every shard read the whole corpus: its count of what was not stored is the run's.
    src = connect(shards[0][0], read_only=True)
    try:
        corpus_report = queries.corpus_report(src)
    finally:
        src.close()
    with staged_database(db_path, fresh=True, carry_if=store.same_run_as_published) as con:
        store.create_run(
            con,
            model=first["model"],
            model_path=first["model_path"],
            revision=first["revision"],
            corpus=first["corpus"],
            config=config,
            config_hash=first["config_hash"],
            n_layers=first["n_layers"],
            hidden_size=first["hidden_size"],
            n_sentences=n_sentences,
            n_tokens=sum(int(run["n_tokens"]) for _, run in shards),
            n_chunks=-(-n_sentences // chunk_size),
            sample_size=sum(int(run["sample_size"]) for _, run in shards),
            status="ingesting",
            factorscope_version=first["factorscope_version"],
        )
        if corpus_report is not None:
            store.write_corpus_report(con, corpus_report)
        for path, _ in shards:
            src = connect(path, read_only=True)
            try:
                wshards.copy_ingest_rows(con, src)  # one transaction per shard
            finally:
                src.close()
            crashpoint("merge_ingest.shard")
        wshards.index_ingest_chunks(con, chunk_size, seconds)
        store.finish_run(con, seconds)
        run = store.require_run(con)
    return MergeIngestSummary(
        db_path,
        len(shards),
        int(run["n_sentences"]),
        int(run["n_tokens"]),
        int(run["sample_size"]),
        time.perf_counter() - started,
    )
