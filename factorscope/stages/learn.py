"""`factorscope learn`: fit the shared dictionary on the stored hidden-state sample.

The sample holds vectors of every layer, so one dictionary serves all layers, as in
the reference. Fitting is one step: a killed ``learn`` stores nothing and is simply
run again; a finished one with the same settings is not repeated once it is
*published*; one stored in ``<db>.wip`` but not yet published (killed while
publishing) is published, not fitted again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError
from factorscope.ingest.sampling import sample_keys
from factorscope.progress import progress_bar
from factorscope.sparse import (
    DEFAULT_LAMBDA1,
    DEFAULT_N_FACTORS,
    DEFAULT_PREPROCESSING,
    PREPROCESSING_CHOICES,
    DictionaryLearner,
)
from factorscope.stages.sharding import run_shard
from factorscope.warehouse import store
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import check_db_path_writable, newest_copy, staged_database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnConfig:
    """Dictionary-learning settings; defaults come from the sweep in docs/SWEEP.md."""

    n_factors: int = DEFAULT_N_FACTORS
    lambda1: float = DEFAULT_LAMBDA1
    preprocessing: str = DEFAULT_PREPROCESSING
    batch_size: int = 256
    n_iter: int | None = None
    seed: int = 0
    max_vectors: int | None = None
    n_jobs: int = -1

    def __post_init__(self) -> None:
        if self.n_factors < 1:
            raise InputError("n_factors must be at least 1")
        if not self.lambda1 > 0:
            raise InputError("lambda1 must be positive")
        if self.preprocessing not in PREPROCESSING_CHOICES:
            raise InputError(
                f"preprocessing must be one of {sorted(PREPROCESSING_CHOICES)}, "
                f"not {self.preprocessing!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LearnSummary:
    dictionary_id: int
    n_factors: int
    n_vectors: int
    seconds: float
    reused: bool
    imported: bool = False
    from_staging: bool = False
    also_published: tuple[int, ...] = ()
    """Other dictionaries an interrupted learn had stored in the staging copy, which this
    run's publish made public too (said, so that no dictionary appears unannounced)."""

    def line(self) -> str:
        if not self.also_published:
            return self._line()
        others = ", ".join(str(d) for d in self.also_published)
        noun = "dictionary" if len(self.also_published) == 1 else "dictionaries"
        return f"{self._line()}; also published {noun} {others}, fitted by an interrupted learn"

    def _line(self) -> str:
        if self.from_staging:
            return (
                f"learn: dictionary {self.dictionary_id}, fitted by an interrupted run, "
                "is published"
            )
        if self.imported:
            if self.reused:
                return (
                    f"learn: dictionary {self.dictionary_id} already holds this array "
                    "(same content); nothing to do"
                )
            return (
                f"learn: imported dictionary {self.dictionary_id}, {self.n_factors:,} factors "
                "(not fitted; acts on raw hidden states; encode uses its --lambda)"
            )
        if self.reused:
            return (
                f"learn: dictionary {self.dictionary_id} with these settings exists; nothing to do"
            )
        return (
            f"learn: dictionary {self.dictionary_id}, {self.n_factors:,} factors fitted on "
            f"{self.n_vectors:,} vectors in {self.seconds:.1f} s"
        )


def _read_state(db_path: Path) -> tuple[dict, list[dict]]:
    """The run and dictionaries, read from wherever the newest data is."""
    source = newest_copy(db_path)
    con = connect(source, read_only=True)
    try:
        run = store.require_run(con)
        dictionaries = store.list_dictionaries(con)
    finally:
        con.close()
    shard = run_shard(run)
    if shard is not None:
        raise InputError(
            f"{db_path} holds shard {shard} of an ingest: join the shards first "
            "(`factorscope merge-ingest --db RUN_DB SHARD_DBS...`) and learn on RUN_DB, "
            "so that the dictionary is fitted on the whole run's sample"
        )
    return run, dictionaries


def _published_dictionaries(db_path: Path) -> list[dict]:
    """The dictionaries of the published file (none if nothing is published yet)."""
    if not db_path.exists():
        return []
    con = connect(db_path, read_only=True)
    try:
        return store.list_dictionaries(con) if store.ingest_finished(con) else []
    finally:
        con.close()


def _matching(dictionaries: list[dict], source: str, wanted: dict) -> dict | None:
    for d in dictionaries:
        if d["source"] == source and d["params"].get("learn_config") == wanted:
            return d
    return None


def read_sample(db_path: Path, max_vectors: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The stored hidden-state sample (every layer) and its layers, cut to ``max_vectors``
    by the same bottom-k rule as the ingest sample, so that a subset spans every layer."""
    con = connect(newest_copy(db_path), read_only=True)
    try:
        X, layers, token_ids = store.read_hidden_sample(con)
    finally:
        con.close()
    if max_vectors is not None and max_vectors < X.shape[0]:
        keys = sample_keys(token_ids, layers, seed)
        keep = np.sort(np.argpartition(keys, max_vectors - 1)[:max_vectors])
        X, layers = X[keep], layers[keep]
    return X, layers


def run_learn(
    db_path: str | Path, config: LearnConfig, *, from_npy: str | Path | None = None
) -> LearnSummary:
    """Fit (or import) a dictionary and store it as the newest one."""
    db_path = Path(db_path)
    check_db_path_writable(db_path)
    run, existing = _read_state(db_path)
    public = _published_dictionaries(db_path)
    if from_npy is not None:
        summary = _import_npy(db_path, Path(from_npy), run, existing, config)
        return _announce_staged(summary, public, existing)
    source = "trainDL"
    wanted = config.to_dict()
    published = _matching(public, source, wanted)
    if published is not None:
        return LearnSummary(published["dictionary_id"], 0, 0, 0.0, True)
    staged = _matching(existing, source, wanted)
    if staged is not None:
        # Stored in the staging copy by a learn killed before it was published.
        with staged_database(db_path) as con:
            store.settle_unfinished_encode(con)
        n_factors = int(staged["params"].get("params", {}).get("n_factors") or 0)
        summary = LearnSummary(staged["dictionary_id"], n_factors, 0, 0.0, False, from_staging=True)
        return _announce_staged(summary, public, existing)

    X, layers = read_sample(db_path, config.max_vectors, config.seed)
    n_vectors = X.shape[0]
    learner = DictionaryLearner(
        config.n_factors,
        lambda1=config.lambda1,
        batch_size=config.batch_size,
        n_iter=config.n_iter,
        seed=config.seed,
        n_jobs=config.n_jobs,
        preprocessing=config.preprocessing,
    )
    started = time.perf_counter()
    with progress_bar("learn", total=1, unit="vectors") as bar:
        task = bar.task_ids[0]

        def report(done: int, total: int) -> None:
            seen = done * config.batch_size  # vectors fed to the online updates
            rate = seen / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=seen, total=total * config.batch_size, rate=rate)

        learner.fit(X, layers=layers, progress=report)

    crashpoint("learn.fitted")
    state = learner.to_dict()
    state["learn_config"] = wanted
    with staged_database(db_path) as con:
        # An encode killed in this staging copy must not be published half done.
        store.settle_unfinished_encode(con)
        dictionary_id = store.save_dictionary(
            con,
            components=learner.components_,
            lambda1=config.lambda1,
            preprocessing=state["preprocessor"] or {},
            params=state,
            seed=config.seed,
            fit_seconds=learner.fit_seconds_,
            source=source,
        )
        crashpoint("learn.saved")
    summary = LearnSummary(
        dictionary_id, learner.components_.shape[0], n_vectors, learner.fit_seconds_, False
    )
    return _announce_staged(summary, public, existing)


def _announce_staged(summary: LearnSummary, public: list[dict], staged: list[dict]) -> LearnSummary:
    """Name the staged dictionaries that this run published besides its own."""
    if summary.reused:
        return summary  # nothing was published
    known = {d["dictionary_id"] for d in public} | {summary.dictionary_id}
    others = tuple(sorted(d["dictionary_id"] for d in staged if d["dictionary_id"] not in known))
    return replace(summary, also_published=others)


NPY_MAGIC = b"\x93NUMPY"


def _import_npy(
    db_path: Path, path: Path, run: dict, existing: list[dict], config: LearnConfig
) -> LearnSummary:
    """Store a user's dictionary (d x m or m x d .npy); it acts on raw hidden states.

    Nothing is fitted: the summary says "imported", the stored settings are the file's
    SHA-256 and shape, no preprocessing, and the ``lambda1`` encode will use. The same
    array (by content, wherever the file lies) is not imported twice.
    """
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not found"
        raise InputError(f"--from-npy {path}: {what} (give a .npy file saved with numpy.save)")
    with path.open("rb") as handle:
        head = handle.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        raise InputError(
            f"--from-npy {path} is not a NumPy .npy file (it does not start with the .npy "
            "header): save the array with numpy.save(path, array)"
        )
    try:
        phi = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        detail = " ".join(str(e).split())
        if "pickle" in detail:
            detail = "it holds Python objects, not numbers"
        raise InputError(f"--from-npy {path} cannot be read as a number array: {detail}") from e
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    wanted = {
        "imported_npy_sha256": digest,
        "shape": list(phi.shape),
        "preprocessing": "none",
        "lambda1": config.lambda1,
    }
    for d in existing:
        if d["params"].get("learn_config") == wanted:
            n_factors = int(d["params"].get("params", {}).get("n_factors", 0))
            return LearnSummary(d["dictionary_id"], n_factors, 0, 0.0, True, imported=True)
    t0 = time.perf_counter()
    learner = DictionaryLearner.from_array(
        phi, n_features=run["hidden_size"], lambda1=config.lambda1, n_jobs=config.n_jobs
    )
    learner.fit_seconds_ = time.perf_counter() - t0
    state = learner.to_dict()
    state["learn_config"] = wanted
    with staged_database(db_path) as con:
        dictionary_id = store.save_dictionary(
            con,
            components=learner.components_,
            lambda1=config.lambda1,
            preprocessing={},
            params=state,
            seed=config.seed,
            fit_seconds=learner.fit_seconds_,
            source=f"npy:{path.resolve()}",
        )
    return LearnSummary(
        dictionary_id, learner.components_.shape[0], 0, learner.fit_seconds_, False, imported=True
    )


def load_learner(record: store.DictionaryRecord) -> DictionaryLearner:
    """Rebuild the fitted learner (atoms and preprocessing) from its stored record."""
    return DictionaryLearner.from_dict(record.params, record.components)
