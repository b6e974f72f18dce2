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
from factorscope.limits import check_setting
from factorscope.progress import progress_bar, stderr_console
from factorscope.sparse import (
    BISECTION_VECTORS,
    CONTROL_KINDS,
    DEFAULT_LAMBDA1,
    DEFAULT_N_FACTORS,
    DEFAULT_PREPROCESSING,
    L0_TOLERANCE,
    PREPROCESSING_CHOICES,
    DictionaryLearner,
    make_control,
)
from factorscope.stages.coder import load_learner
from factorscope.stages.sharding import run_shard
from factorscope.warehouse import store, summaries
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
        # limits.LIMITS is the one rule for these ranges: CLI, TOML and Python API alike
        for key in ("n_factors", "lambda1", "n_iter", "max_vectors", "batch_size"):
            check_setting(key, getattr(self, key), key)
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
    control: ControlOutcome | None = None
    """Set for ``learn --control``: the control's parent and its lambda search."""

    def line(self) -> str:
        if not self.also_published:
            return self._line()
        others = ", ".join(str(d) for d in self.also_published)
        noun = "dictionary" if len(self.also_published) == 1 else "dictionaries"
        return f"{self._line()}; also published {noun} {others}, fitted by an interrupted learn"

    def _line(self) -> str:
        if self.control is not None:
            return self.control.line(self)
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


@dataclass(frozen=True)
class ControlConfig:
    """``learn --control KIND``: a control dictionary beside a parent dictionary.

    Its atoms are random (``CONTROL_KINDS``), its size and preprocessing the parent's,
    and its lambda is bisected until its mean L0 on a seeded subsample of the stored
    sample (``bisection_vectors`` vectors, every layer) is within ``tolerance`` (a share
    of the parent's mean L0 on the same vectors, with the parent's own lambda).
    """

    kind: str
    parent_id: int | None = None
    """The parent's id; ``None``: the default dictionary (the newest that is not a control,
    the one ``encode`` codes without ``--dictionary``)."""
    seed: int = 0
    tolerance: float = L0_TOLERANCE
    max_steps: int = 20
    bisection_vectors: int = BISECTION_VECTORS
    n_jobs: int = -1

    def __post_init__(self) -> None:
        if self.kind not in CONTROL_KINDS:
            raise InputError(
                f"--control must be one of {', '.join(CONTROL_KINDS)}, not {self.kind!r}"
            )
        if self.parent_id is not None and (isinstance(self.parent_id, bool) or self.parent_id < 1):
            raise InputError(
                f"--parent must be a dictionary id (1 or more), not {self.parent_id!r}"
            )
        if isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"--seed must be 0 or more, not {self.seed!r}")
        if not 0 < self.tolerance < 1:
            raise InputError(f"tolerance must be a share between 0 and 1, not {self.tolerance!r}")
        if self.max_steps < 1 or self.bisection_vectors < 1:
            raise InputError("max_steps and bisection_vectors must be at least 1")

    def settings(self, parent_id: int) -> dict:
        """What makes two controls the same (the stored ``learn_config`` holds these)."""
        return {
            "control": self.kind,
            "parent_id": parent_id,
            "seed": self.seed,
            "tolerance": self.tolerance,
            "max_steps": self.max_steps,
            "max_bisection_vectors": self.bisection_vectors,
        }


@dataclass(frozen=True)
class ControlOutcome:
    """A control's parent and lambda search, for :class:`LearnSummary`'s line."""

    kind: str
    parent_id: int
    seed: int
    lambda1: float | None = None
    target_l0: float | None = None
    achieved_l0: float | None = None
    tolerance: float = L0_TOLERANCE
    converged: bool = True
    steps: int = 0
    n_bisection_vectors: int = 0

    @classmethod
    def from_stored(cls, learn_config: dict) -> ControlOutcome:
        return cls(
            kind=learn_config["control"],
            parent_id=int(learn_config["parent_id"]),
            seed=int(learn_config["seed"]),
            lambda1=learn_config.get("lambda1"),
            target_l0=learn_config.get("target_l0"),
            achieved_l0=learn_config.get("achieved_l0"),
            tolerance=float(learn_config.get("tolerance", L0_TOLERANCE)),
            converged=bool(learn_config.get("converged", True)),
            steps=int(learn_config.get("bisection_steps", 0)),
            n_bisection_vectors=int(learn_config.get("n_bisection_vectors", 0)),
        )

    def line(self, summary: LearnSummary) -> str:
        d = summary.dictionary_id
        what = f"control dictionary {d} ({self.kind}, parent {self.parent_id}"
        if summary.reused:
            return f"learn: {what}, seed {self.seed}) already exists; nothing to do"
        encode = f"encode it with `factorscope encode --dictionary {d}`"
        if summary.from_staging:
            return f"learn: {what}), made by an interrupted run, is published; {encode}"
        tol = f"{self.tolerance:.0%}"
        head = f"learn: {what}), {summary.n_factors:,} factors"
        if self.converged:
            return (
                f"{head}, lambda {self.lambda1:.4g} matches the parent's mean L0 "
                f"{self.target_l0:.1f} (control {self.achieved_l0:.1f}, tolerance {tol}; "
                f"{self.steps} steps on {self.n_bisection_vectors:,} sample vectors, "
                f"{summary.seconds:.1f} s); {encode}"
            )
        return (
            f"{head}: NOT matched within the {tol} tolerance after {self.steps} steps: the "
            f"closest lambda, {self.lambda1:.4g}, gives mean L0 {self.achieved_l0:.1f} "
            f"against the parent's {self.target_l0:.1f} (on {self.n_bisection_vectors:,} "
            f"sample vectors); it is stored as is; {encode}"
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
            summaries.settle_unfinished_encode(con)
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
    dictionary_id = _store_learner(
        db_path,
        learner,
        state,
        lambda1=config.lambda1,
        seed=config.seed,
        fit_seconds=learner.fit_seconds_,
        source=source,
    )
    summary = LearnSummary(
        dictionary_id, learner.components_.shape[0], n_vectors, learner.fit_seconds_, False
    )
    return _announce_staged(summary, public, existing)


CONTROL_SOURCE = "control:"
"""``dictionaries.source`` of a control: ``control:<kind>``."""


def is_control(dictionary: dict) -> bool:
    """Whether a dictionary of ``store.list_dictionaries`` is a control."""
    return str(dictionary["source"]).startswith(CONTROL_SOURCE) or "control" in (
        dictionary["params"].get("learn_config") or {}
    )


def _matching_control(dictionaries: list[dict], settings: dict) -> dict | None:
    for d in dictionaries:
        stored = d["params"].get("learn_config") or {}
        if is_control(d) and {k: stored.get(k) for k in settings} == settings:
            return d
    return None


def _control_parent(db_path: Path, run: dict, existing: list[dict], parent_id: int | None):
    """The parent's record, checked: it exists, is not a control and fits the run."""
    by_id = {d["dictionary_id"]: d for d in existing}
    if parent_id is None:
        candidates = [d for d in existing if not is_control(d)]
        if not candidates:
            raise InputError(
                f"{db_path} holds no dictionary to make a control of: run `factorscope learn` "
                "first (or give --parent N)"
            )
        parent_id = int(candidates[-1]["dictionary_id"])
    elif parent_id not in by_id:
        known = ", ".join(str(i) for i in sorted(by_id)) or "none"
        raise InputError(
            f"--parent {parent_id}: {db_path} holds no dictionary {parent_id} "
            f"(its dictionaries: {known}; see `factorscope status`)"
        )
    if is_control(by_id[parent_id]):
        of = (by_id[parent_id]["params"].get("learn_config") or {}).get("parent_id")
        raise InputError(
            f"--parent {parent_id}: dictionary {parent_id} is itself a control"
            + (f" (of dictionary {of})" if of is not None else "")
            + ": give a learned or imported dictionary as the parent"
        )
    con = connect(newest_copy(db_path), read_only=True)
    try:
        record = store.load_dictionary(con, parent_id)
    finally:
        con.close()
    if record.components.shape[1] != run["hidden_size"]:
        raise InputError(
            f"--parent {parent_id}: dictionary {parent_id} has {record.components.shape[1]}-dim "
            f"atoms but this run's hidden size is {run['hidden_size']}: it belongs to another "
            "run and cannot have a control here"
        )
    return record


def run_learn_control(db_path: str | Path, config: ControlConfig) -> LearnSummary:
    """Make (or reuse) a control dictionary of a parent and store it as kind 'control'.

    The control is a dictionary like any other (``encode --dictionary N`` codes it), but
    it is never the default one: ``encode`` without ``--dictionary`` and the public views
    prefer the dictionaries that are not controls. Written through the staging copy like
    ``run_learn`` (a killed run stores nothing; one killed while publishing is published
    by the next run with the same settings).
    """
    db_path = Path(db_path)
    check_db_path_writable(db_path)
    run, existing = _read_state(db_path)
    public = _published_dictionaries(db_path)
    parent = _control_parent(db_path, run, existing, config.parent_id)
    settings = config.settings(parent.dictionary_id)
    published = _matching_control(public, settings)
    if published is not None:
        outcome = ControlOutcome.from_stored(published["params"]["learn_config"])
        return LearnSummary(published["dictionary_id"], 0, 0, 0.0, True, control=outcome)
    staged = _matching_control(existing, settings)
    if staged is not None:
        # Stored in the staging copy by a learn killed before it was published.
        with staged_database(db_path) as con:
            summaries.settle_unfinished_encode(con)
        outcome = ControlOutcome.from_stored(staged["params"]["learn_config"])
        n_factors = int(staged["params"].get("params", {}).get("n_factors") or 0)
        summary = LearnSummary(
            staged["dictionary_id"], n_factors, 0, 0.0, False, from_staging=True, control=outcome
        )
        return _announce_staged(summary, public, existing)

    parent_learner = load_learner(parent)
    X, layers = read_sample(db_path, None, config.seed)
    what = f"control ({config.kind}, parent {parent.dictionary_id})"
    with stderr_console.status(f"{what}: coding the sample with the parent") as status:

        def report(step: int, lambda1: float, l0: float) -> None:
            status.update(
                f"{what}: bisection step {step}/{config.max_steps}, lambda {lambda1:.4g}, "
                f"mean L0 {l0:.1f}"
            )

        control = make_control(
            parent_learner,
            config.kind,
            X,
            layers=layers,
            seed=config.seed,
            n_bisection_vectors=config.bisection_vectors,
            rel_tol=config.tolerance,
            max_steps=config.max_steps,
            n_jobs=config.n_jobs,
            progress=report,
        )
    del X, layers
    search = control.search  # not converged: stored, and the line says so
    crashpoint("learn.fitted")
    learner = control.learner
    state = learner.to_dict()
    state["learn_config"] = {
        **settings,
        "lambda1": search.lambda1,
        "target_l0": search.target_l0,
        "achieved_l0": search.mean_l0,
        "converged": search.converged,
        "bisection_steps": search.steps,
        "bisection_trace": [list(t) for t in search.trace],
        "n_bisection_vectors": control.n_bisection_vectors,
        "parent_lambda1": float(parent_learner.lambda1),
    }
    dictionary_id = _store_learner(
        db_path,
        learner,
        state,
        lambda1=search.lambda1,
        seed=config.seed,
        fit_seconds=control.seconds,
        source=f"{CONTROL_SOURCE}{config.kind}",
        kind="control",
        parent_id=parent.dictionary_id,
    )
    summary = LearnSummary(
        dictionary_id,
        learner.components_.shape[0],
        control.n_bisection_vectors,
        control.seconds,
        False,
        control=ControlOutcome.from_stored(state["learn_config"]),
    )
    return _announce_staged(summary, public, existing)


def _store_learner(
    db_path: Path,
    learner: DictionaryLearner,
    state: dict,
    *,
    lambda1: float,
    seed: int,
    fit_seconds: float,
    source: str,
    kind: str = "learned",
    parent_id: int | None = None,
) -> int:
    """Store a fitted (or control) learner in the staging copy and publish it; its id."""
    with staged_database(db_path) as con:
        # An encode killed in this staging copy must not be published half done.
        summaries.settle_unfinished_encode(con)
        dictionary_id = store.save_dictionary(
            con,
            components=learner.components_,
            lambda1=lambda1,
            preprocessing=state["preprocessor"] or {},
            params=state,
            seed=seed,
            fit_seconds=fit_seconds,
            source=source,
            kind=kind,
            parent_id=parent_id,
        )
        crashpoint("learn.saved")
    return dictionary_id


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
            kind="imported",
        )
    return LearnSummary(
        dictionary_id, learner.components_.shape[0], 0, learner.fit_seconds_, False, imported=True
    )
