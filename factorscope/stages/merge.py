"""`factorscope merge --db OUT SHARD_DIRS...`: one warehouse from the shard folders.

The shards must come from one run and one dictionary and cover ``0..n-1`` exactly
once. The merged database has the tables and views of a locally encoded one (the app
and the SQL console work on it unchanged); its top contexts, importance scores and
levels equal a single run's (see :mod:`factorscope.warehouse.shards`). With
``attach=True`` the codes stay in the shard folders and ``codes`` is a view over them.

A merge always builds a fresh staging copy and publishes it whole, so a killed merge
is simply run again. The labels and LIME results of the file it replaces are kept
only when that file holds the same run (same config hash and sentence ids). Until
the new file is published, the attached folders of both files stay readable (the
sidecar lists both), so a kill anywhere leaves the published file served.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError, WarehouseError
from factorscope.stages.sharding import check_complete_shards
from factorscope.warehouse import senses, store, summaries
from factorscope.warehouse.parquet import ShardLayout, attached_roots, write_roots_sidecar
from factorscope.warehouse.publish import check_db_path_writable, staged_database
from factorscope.warehouse.shards import build_merged_warehouse

DEFAULT_TOP_K = summaries.DEFAULTS.top_k


@dataclass(frozen=True)
class MergeSummary:
    db_path: Path
    n_shards: int
    n_sentences: int
    n_tokens: int
    n_codes: int
    seconds: float
    attached: bool

    def line(self) -> str:
        where = "attached in place" if self.attached else "copied in"
        return (
            f"merge: {self.n_shards} shards, {self.n_sentences:,} sentences, "
            f"{self.n_tokens:,} tokens, {self.n_codes:,} codes ({where}) in "
            f"{self.seconds:.1f} s -> {self.db_path}"
        )


def read_shards(shard_dirs: list[str | Path]) -> list[tuple[ShardLayout, dict]]:
    """The shard folders' manifests, checked to form one complete set, ordered by shard."""
    if not shard_dirs:
        raise InputError("give at least one shard folder to merge")
    found = []
    for d in shard_dirs:
        layout = ShardLayout(Path(d).resolve())
        if not layout.root.is_dir():
            raise InputError(f"shard folder {d} not found")
        manifest = layout.read_manifest()
        if manifest is None:
            raise InputError(
                f"shard folder {d} is incomplete (no shard.json): run its encode again to finish it"
            )
        found.append((layout, manifest))
    first = found[0][1]["job"]
    for layout, manifest in found[1:]:
        job = manifest["job"]
        if job["fingerprint"] != first["fingerprint"]:
            raise InputError(
                f"{layout.root} was encoded from another run or dictionary than {found[0][0].root}"
            )
        for key in ("n_shards", "partial_k", "importance_k"):
            if job[key] != first[key]:
                raise InputError(f"{layout.root}: {key} {job[key]} differs from {first[key]}")
    check_complete_shards(
        [(m["job"]["shard"], m["job"]["n_shards"]) for _, m in found], "shard folders"
    )
    return sorted(found, key=lambda item: item[1]["job"]["shard"])


def _allowed_while_publishing(db_path: Path, roots: list[Path]) -> list[Path] | None:
    """The shard folders of both the published file and the new one (None: neither attaches).

    The sidecar names the folders a reader of ``db_path`` may read. Written before the
    publish, it must serve the old file (a kill before or inside the publish leaves it
    published) and the new one (a kill after the replace), so it lists both; the merge
    then narrows it to the new file's folders.
    """
    try:
        published = [Path(r).parent for r in attached_roots(db_path)]  # ".../shard/codes/"
    except WarehouseError:
        published = []  # an unreadable sidecar serves no file; it is replaced
    both = list(dict.fromkeys([*published, *roots]))
    return both or None


def run_merge(
    db_path: str | Path,
    shard_dirs: list[str | Path],
    *,
    attach: bool = False,
    top_k: int = DEFAULT_TOP_K,
) -> MergeSummary:
    """Build (replace) the warehouse at ``db_path`` from complete shard folders."""
    db_path = Path(db_path)
    check_db_path_writable(db_path)
    shards = read_shards(shard_dirs)
    job = shards[0][1]["job"]
    if top_k > job["partial_k"]:
        raise InputError(
            f"top_k {top_k} exceeds the shards' partial top-k ({job['partial_k']}): "
            "re-encode the shards with a larger --partial-k"
        )
    started = time.perf_counter()
    manifest = shards[0][1]
    atoms = pq.read_table(shards[0][0].dictionary).sort_by("factor")
    dictionary = dict(manifest["dictionary"])
    dictionary["components"] = store.arrow_to_vectors(
        atoms.column("vector"), int(manifest["run"]["hidden_size"])
    )
    roots = [layout.root for layout, _ in shards]
    # Labels and LIME results belong to a run: keep them only from a file of this one.
    with staged_database(db_path, fresh=True, carry_if=store.same_run_as_published) as con:
        build_merged_warehouse(
            con,
            roots,
            run=manifest["run"],
            dictionary=dictionary,
            attach=attach,
            top_k=top_k,
            importance_k=int(job["importance_k"]),
        )
        # The shards' sentence metadata (build_merged_warehouse copies the other columns).
        senses.fill_sentence_metadata(con, roots)
        crashpoint("merge.built")
        # Before the file is published, so no reader sees attached codes it may not read;
        # the folders of the file being replaced stay allowed until it is replaced.
        write_roots_sidecar(db_path, _allowed_while_publishing(db_path, roots if attach else []))
    # Published: only the new file's folders (none for codes copied in).
    write_roots_sidecar(db_path, roots if attach else None)
    counts = [m["counts"] for _, m in shards]
    return MergeSummary(
        db_path,
        len(shards),
        sum(c["sentences"] for c in counts),
        sum(c["tokens"] for c in counts),
        sum(c["codes"] for c in counts),
        time.perf_counter() - started,
        attach,
    )
